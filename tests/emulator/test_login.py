"""Entra login routes against real msal: tokens by secret and certificate, and Entra's errors."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
from typing import Any, NamedTuple

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from gateway.emulator import Emulator, EmulatorApp
from gateway.emulator.tokens import b64url_decode
from tests.emulator.conftest import StartEmulator
from tests.emulator.helpers import (
    CLIENT,
    GRAPH_SCOPE,
    SECRET,
    TENANT,
    graph_client,
    make_certificate,
    msal_app,
    requests_session,
    sha1_thumbprint,
    token_response,
)


def claims_of(token: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(b64url_decode(token.split(".")[1]))
    return result


async def acquire(emulator: Emulator, credential: Any, *, tenant: str = TENANT) -> dict[str, Any]:
    """msal's acquire_token_for_client, in a thread (msal blocks; the emulator needs the loop)."""

    def blocking() -> dict[str, Any]:
        with requests_session(emulator) as session:
            app = msal_app(emulator, session, credential, tenant=tenant)
            result: dict[str, Any] = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
            return result

    return await asyncio.to_thread(blocking)


@pytest.fixture(autouse=True)
def _ca_bundle_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """Arm the trap users' machines have: a CA bundle in the environment that would override
    `verify=` on a requests session unless the session ignores the environment."""
    if not (os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")):
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", ssl.get_default_verify_paths().openssl_cafile)


async def test_msal_gets_a_token_with_a_client_secret(registered: Emulator) -> None:
    result = await acquire(registered, SECRET)

    assert result["token_type"] == "Bearer"
    assert result["expires_in"] == 3599
    claims = claims_of(result["access_token"])
    assert claims["aud"] == "https://graph.microsoft.com"
    assert claims["tid"] == TENANT
    assert claims["appid"] == claims["azp"] == CLIENT
    assert claims["roles"] == ["Mail.Send", "Mail.ReadWrite"]
    assert claims["idtyp"] == "app"
    assert claims["exp"] - claims["iat"] == 3599
    assert registered.stats.token_requests == 1


@pytest.mark.parametrize("form", ["thumbprint", "public_certificate"])
async def test_msal_gets_a_token_with_a_certificate(
    start_emulator: StartEmulator, form: str
) -> None:
    # {"thumbprint"} makes msal sign RS256 with x5t (SHA-1); {"public_certificate"} PS256 with
    # x5t#S256 and x5c: both are what Entra accepts for a registered certificate.
    certificate, key = make_certificate()
    emulator = await start_emulator(
        apps=(EmulatorApp(TENANT, CLIENT, certificate_pem=certificate),)
    )
    credential: dict[str, str] = {"private_key": key.decode()}
    if form == "thumbprint":
        credential["thumbprint"] = sha1_thumbprint(certificate)
    else:
        credential["public_certificate"] = certificate.decode()

    result = await acquire(emulator, credential)

    assert "access_token" in result, result
    assert claims_of(result["access_token"])["roles"] == ["Mail.Send"]


async def test_open_mode_accepts_any_tenant_client_and_secret(emulator: Emulator) -> None:
    result = await acquire(emulator, "anything at all", tenant="contoso.onmicrosoft.com")

    claims = claims_of(result["access_token"])
    assert claims["tid"] == "contoso.onmicrosoft.com"
    assert set(claims["roles"]) == {"Mail.Send", "Mail.ReadWrite"}


async def test_app_without_admin_consent_gets_a_token_without_roles(
    start_emulator: StartEmulator,
) -> None:
    emulator = await start_emulator(apps=(EmulatorApp(TENANT, CLIENT, SECRET, roles=()),))

    result = await acquire(emulator, SECRET)

    assert "roles" not in claims_of(result["access_token"])


async def test_unknown_tenant_fails_discovery_with_aadsts90002(registered: Emulator) -> None:
    with pytest.raises(ValueError, match="Unable to get authority configuration") as raised:
        await acquire(registered, SECRET, tenant="99999999-9999-9999-9999-999999999999")
    # msal keeps Entra's answer as the cause: what a gateway shows the administrator
    cause = raised.value.__cause__ or raised.value.__context__
    assert "AADSTS90002: Tenant '99999999-9999-9999-9999-999999999999' not found" in str(cause)


async def test_unknown_tenant_at_the_token_endpoint(registered: Emulator) -> None:
    form = {"grant_type": "client_credentials", "client_id": CLIENT, "client_secret": SECRET}
    async with graph_client(registered) as http:
        status, body = await token_response(http, registered, "not-a-tenant", form)
    assert status == 400
    assert body["error_codes"] == [90002]
    assert body["error_description"].startswith("AADSTS90002: Tenant 'not-a-tenant' not found.")
    assert {"timestamp", "trace_id", "correlation_id"} <= set(body)


class Refusal(NamedTuple):
    app: EmulatorApp
    credential: str
    status: int
    error: str
    code: int


REFUSALS = {
    "client-not-in-tenant": Refusal(
        EmulatorApp(TENANT, "someone-else", SECRET), SECRET, 400, "unauthorized_client", 700016
    ),
    "wrong-secret": Refusal(
        EmulatorApp(TENANT, CLIENT, SECRET), "wrong", 401, "invalid_client", 7000215
    ),
    "expired-secret": Refusal(
        EmulatorApp(TENANT, CLIENT, SECRET, secret_expired=True),
        SECRET,
        401,
        "invalid_client",
        7000222,
    ),
}


@pytest.mark.parametrize("case", REFUSALS.values(), ids=REFUSALS.keys())
async def test_entra_errors_reach_msal(start_emulator: StartEmulator, case: Refusal) -> None:
    emulator = await start_emulator(apps=(case.app,))

    result = await acquire(emulator, case.credential)

    assert result["error"] == case.error
    assert result["error_codes"] == [case.code]
    assert result["error_description"].startswith(f"AADSTS{case.code}: ")
    assert emulator.stats.token_requests == 1
    form = {
        "grant_type": "client_credentials",
        "client_id": CLIENT,
        "client_secret": case.credential,
        "scope": GRAPH_SCOPE,
    }
    async with graph_client(emulator) as http:
        assert (await token_response(http, emulator, TENANT, form))[0] == case.status


async def test_certificate_not_registered_is_aadsts700027(start_emulator: StartEmulator) -> None:
    registered_cert, _ = make_certificate("registered")
    other_cert, other_key = make_certificate("someone else's")
    emulator = await start_emulator(
        apps=(EmulatorApp(TENANT, CLIENT, certificate_pem=registered_cert),)
    )

    result = await acquire(
        emulator, {"private_key": other_key.decode(), "public_certificate": other_cert.decode()}
    )

    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [700027]
    assert "not registered on application" in result["error_description"]


async def test_assertion_signed_by_another_key_with_the_registered_thumbprint_is_refused(
    start_emulator: StartEmulator,
) -> None:
    registered_cert, _ = make_certificate("registered")
    _, other_key = make_certificate("attacker")
    emulator = await start_emulator(
        apps=(EmulatorApp(TENANT, CLIENT, certificate_pem=registered_cert),)
    )

    result = await acquire(
        emulator,
        {"private_key": other_key.decode(), "thumbprint": sha1_thumbprint(registered_cert)},
    )

    assert result["error_codes"] == [700027]
    assert "invalid signature" in result["error_description"]


async def test_scope_must_end_in_default(emulator: Emulator) -> None:
    form = {
        "grant_type": "client_credentials",
        "client_id": CLIENT,
        "client_secret": SECRET,
        "scope": "https://graph.microsoft.com/Mail.Send",
    }
    async with graph_client(emulator) as http:
        status, body = await token_response(http, emulator, TENANT, form)
    assert (status, body["error"], body["error_codes"]) == (400, "invalid_scope", [1002012])


async def test_missing_credential_and_unknown_grant(emulator: Emulator) -> None:
    async with graph_client(emulator) as http:
        status, body = await token_response(
            http,
            emulator,
            TENANT,
            {"grant_type": "client_credentials", "client_id": CLIENT, "scope": GRAPH_SCOPE},
        )
        assert (status, body["error_codes"]) == (401, [7000218])
        status, body = await token_response(
            http, emulator, TENANT, {"grant_type": "password", "client_id": CLIENT}
        )
        assert (status, body["error"]) == (400, "unsupported_grant_type")


async def test_discovery_document_and_signing_keys(emulator: Emulator) -> None:
    async with graph_client(emulator) as http:
        async with http.get(
            f"{emulator.login_endpoint}/{TENANT}/v2.0/.well-known/openid-configuration"
        ) as response:
            config = await response.json()
        async with http.get(config["jwks_uri"]) as response:
            jwks = await response.json()
        async with http.get(f"{emulator.login_endpoint}/common/discovery/instance") as response:
            instance = await response.json()
        async with http.post(
            config["token_endpoint"],
            data={
                "grant_type": "client_credentials",
                "client_id": CLIENT,
                "client_secret": "x",
                "scope": GRAPH_SCOPE,
            },
        ) as response:
            token = (await response.json())["access_token"]

    for key in ("authorization_endpoint", "token_endpoint", "device_authorization_endpoint"):
        assert config[key].startswith(f"{emulator.base_url}/{TENANT}/oauth2/v2.0/")
    assert config["issuer"] == f"{emulator.base_url}/{TENANT}/v2.0"
    assert instance["tenant_discovery_endpoint"].startswith(emulator.base_url)
    # The access token verifies against the published key (ES256, P-256).
    header_b64, payload_b64, signature_b64 = token.split(".")
    [jwk] = jwks["keys"]
    assert json.loads(b64url_decode(header_b64))["kid"] == jwk["kid"]
    public_key = ec.EllipticCurvePublicNumbers(
        int.from_bytes(b64url_decode(jwk["x"]), "big"),
        int.from_bytes(b64url_decode(jwk["y"]), "big"),
        ec.SECP256R1(),
    ).public_key()
    raw = b64url_decode(signature_b64)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public_key.verify(der, f"{header_b64}.{payload_b64}".encode(), ec.ECDSA(hashes.SHA256()))


async def test_client_secret_basic_authentication(registered: Emulator) -> None:
    credentials = base64.b64encode(f"{CLIENT}:{SECRET}".encode()).decode()
    async with (
        graph_client(registered) as http,
        http.post(
            f"{registered.login_endpoint}/{TENANT}/oauth2/v2.0/token",
            data={"grant_type": "client_credentials", "scope": GRAPH_SCOPE},
            headers={"Authorization": f"Basic {credentials}"},
        ) as response,
    ):
        assert response.status == 200
        assert claims_of((await response.json())["access_token"])["appid"] == CLIENT
