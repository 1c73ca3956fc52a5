"""Credentials without a secret in the emulator: its test OIDC issuer, federated credentials
checked against the assertion's claims and signature (with Entra's error codes), and the
managed identity endpoints (IMDS and App Service), over HTTPS without msal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from gateway.emulator import (
    Emulator,
    EmulatorApp,
    EmulatorManagedIdentity,
    FederatedCredential,
)
from gateway.emulator.tokens import b64url_decode
from tests.emulator.conftest import StartEmulator
from tests.emulator.helpers import (
    CLIENT,
    GRAPH_SCOPE,
    SECRET,
    TENANT,
    Endpoints,
    get_token,
    graph_client,
)
from tests.emulator.test_admin_and_cli import _Remote, read_ready, start_cli, stop_cli

SUBJECT = "system:serviceaccount:mail:smtp-graph-gateway"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
IDENTITY_HEADER = "identity-header-not-for-logs"
SYSTEM = EmulatorManagedIdentity(
    TENANT, "5a5a5a5a-0000-1111-2222-333333333333", system_assigned=True
)
USER = EmulatorManagedIdentity(TENANT, "6b6b6b6b-0000-1111-2222-333333333333", roles=())
OTHER_TENANT = "22222222-3333-4444-5555-666666666666"


def claims_of(token: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(b64url_decode(token.split(".")[1]))
    return result


def federated_app(*credentials: FederatedCredential, **fields: Any) -> EmulatorApp:
    return EmulatorApp(TENANT, CLIENT, federated_credentials=credentials, **fields)


KUBERNETES = FederatedCredential("{emulator}/oidc/k8s", SUBJECT, name="aks")


async def exchange(
    http: aiohttp.ClientSession, emulator: Endpoints, assertion: str, *, tenant: str = TENANT
) -> tuple[int, dict[str, Any]]:
    async with http.post(
        f"{emulator.login_endpoint}/{tenant}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT,
            "client_assertion_type": JWT_BEARER,
            "client_assertion": assertion,
            "scope": GRAPH_SCOPE,
        },
    ) as response:
        return response.status, await response.json()


async def test_the_test_issuer_publishes_keys_that_verify_its_tokens(
    start_emulator: StartEmulator,
) -> None:
    emulator = await start_emulator()
    issuer = emulator.oidc_issuer("k8s")
    async with graph_client(emulator) as http:
        async with http.get(f"{issuer}/.well-known/openid-configuration") as response:
            discovery = await response.json()
        async with http.get(discovery["jwks_uri"]) as response:
            [key] = (await response.json())["keys"]
        async with http.post(
            f"{emulator.base_url}/_emulator/oidc/k8s/token", json={"subject": SUBJECT}
        ) as response:
            token = (await response.json())["token"]
    assert discovery["issuer"] == issuer == f"{emulator.base_url}/oidc/k8s"
    header, claims = (json.loads(b64url_decode(part)) for part in token.split(".")[:2])
    assert header["kid"] == key["kid"] and header["alg"] == "RS256"
    assert claims["iss"] == issuer and claims["sub"] == SUBJECT
    assert claims["aud"] == ["api://AzureADTokenExchange"]
    assert claims["kubernetes.io"]["serviceaccount"]["name"] == "smtp-graph-gateway"
    public = rsa.RSAPublicNumbers(
        int.from_bytes(b64url_decode(key["e"])), int.from_bytes(b64url_decode(key["n"]))
    ).public_key()
    signing_input, _, signature = token.rpartition(".")
    public.verify(
        b64url_decode(signature), signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()
    )


async def test_a_trusted_token_is_exchanged_and_recorded(start_emulator: StartEmulator) -> None:
    emulator = await start_emulator(apps=(federated_app(KUBERNETES),))
    assertion = emulator.mint_service_account_token(SUBJECT)
    async with graph_client(emulator) as http:
        status, body = await exchange(http, emulator, assertion)
    assert status == 200, body
    assert claims_of(body["access_token"])["appid"] == CLIENT
    [use] = emulator.stats.federated_assertions
    assert (use.client_id, use.subject) == (CLIENT, SUBJECT)
    assert use.jti == claims_of(assertion)["jti"]


def _forged(emulator: Emulator) -> str:
    """Claims to be from k8s, signed with another issuer's key."""
    return emulator.mint_service_account_token(
        SUBJECT, issuer="elsewhere", iss=emulator.oidc_issuer("k8s")
    )


@pytest.mark.parametrize(
    ("credentials", "make", "code", "words"),
    [
        ((), lambda e: e.mint_service_account_token(SUBJECT), 70021, "Assertion Subject: 'system"),
        (
            (KUBERNETES,),
            lambda e: e.mint_service_account_token(SUBJECT.upper()),
            7002138,
            "case-insensitive",
        ),
        ((KUBERNETES,), _forged, 700027, "signature validation"),
        (
            (KUBERNETES,),
            lambda e: e.mint_service_account_token(SUBJECT, lifetime=-3600),
            700024,
            "not within its valid time range",
        ),
        (
            (FederatedCredential("https://127.0.0.1:9/unreachable", SUBJECT),),
            lambda e: e.mint_service_account_token(SUBJECT, iss="https://127.0.0.1:9/unreachable"),
            50166,
            "External OIDC endpoint failed",
        ),
    ],
)
async def test_untrusted_assertions_get_entras_codes(
    start_emulator: StartEmulator, credentials: Any, make: Any, code: int, words: str
) -> None:
    emulator = await start_emulator(apps=(federated_app(*credentials),))
    async with graph_client(emulator) as http:
        status, body = await exchange(http, emulator, make(emulator))
    assert status in (400, 401)
    assert body["error_codes"] == [code]
    assert words in body["error_description"]
    assert emulator.stats.federated_assertions == []


async def test_an_entra_app_token_is_not_a_federated_credential(
    start_emulator: StartEmulator,
) -> None:
    entra = FederatedCredential(f"{{emulator}}/{TENANT}/v2.0", "any")
    emulator = await start_emulator(
        apps=(federated_app(entra), EmulatorApp(TENANT, "secret-app", SECRET))
    )
    async with graph_client(emulator) as http:
        access_token = await get_token(http, emulator, client_id="secret-app")
        status, body = await exchange(http, emulator, access_token)
    assert (status, body["error_codes"]) == (400, [700222])


async def test_imds_gives_the_system_and_user_assigned_identities_tokens(
    start_emulator: StartEmulator,
) -> None:
    emulator = await start_emulator(managed_identities=(SYSTEM, USER))
    url = f"{emulator.base_url}/metadata/identity/oauth2/token"
    query = {"api-version": "2018-02-01", "resource": "api://AzureADTokenExchange"}
    async with graph_client(emulator) as http:
        async with http.get(url, params=query) as response:
            no_header = (response.status, await response.json())
        async with http.get(url, params=query, headers={"Metadata": "true"}) as response:
            system = await response.json()
        user_query = {**query, "client_id": USER.client_id}
        async with http.get(url, params=user_query, headers={"Metadata": "true"}) as response:
            user = await response.json()
        unknown = {**query, "client_id": "00000000-0000-0000-0000-000000000000"}
        async with http.get(url, params=unknown, headers={"Metadata": "true"}) as response:
            missing = (response.status, await response.json())
    assert no_header == (
        400,
        {"error": "invalid_request", "error_description": "Required metadata header not specified"},
    )
    claims = claims_of(system["access_token"])
    assert claims["iss"] == f"{emulator.base_url}/{TENANT}/v2.0"
    assert claims["sub"] == SYSTEM.object_id and claims["aud"] == "api://AzureADTokenExchange"
    assert "Microsoft.Compute/virtualMachines" in claims["xms_mirid"]
    assert int(system["expires_in"]) > 0
    assert claims_of(user["access_token"])["sub"] == USER.object_id
    assert missing == (400, {"error": "invalid_request", "error_description": "Identity not found"})
    assert emulator.stats.managed_identity_requests == 4


async def test_app_service_endpoint_wants_its_identity_header(
    start_emulator: StartEmulator,
) -> None:
    emulator = await start_emulator(managed_identities=(SYSTEM,), identity_header=IDENTITY_HEADER)
    environment = emulator.managed_identity_environment()
    url = environment["IDENTITY_ENDPOINT"]
    query = {"api-version": "2019-08-01", "resource": emulator.base_url}
    async with graph_client(emulator) as http:
        async with http.get(url, params=query, headers={"X-IDENTITY-HEADER": "wrong"}) as response:
            refused = (response.status, (await response.json())["statusCode"])
        good = {"X-IDENTITY-HEADER": environment["IDENTITY_HEADER"]}
        async with http.get(url, params=query, headers=good) as response:
            graph = await response.json()
        bad_resource = {**query, "resource": "https://vault.example"}
        async with http.get(url, params=bad_resource, headers=good) as response:
            unknown = (response.status, (await response.json())["message"])
    assert environment["IDENTITY_HEADER"] == IDENTITY_HEADER
    assert refused == (401, 401)
    assert int(graph["expires_on"]) > 0 and graph["client_id"] == SYSTEM.client_id
    assert claims_of(graph["access_token"])["roles"] == ["Mail.Send"]  # a Graph token
    assert unknown[0] == 400 and unknown[1].startswith("AADSTS500011")


async def test_a_managed_identity_token_is_an_apps_credential_in_another_tenant(
    start_emulator: StartEmulator,
) -> None:
    trust = FederatedCredential(f"{{emulator}}/{TENANT}/v2.0", USER.object_id)
    emulator = await start_emulator(
        apps=(federated_app(trust, other_tenants=(OTHER_TENANT,)),), managed_identities=(USER,)
    )
    async with graph_client(emulator) as http:
        async with http.get(
            f"{emulator.base_url}/metadata/identity/oauth2/token",
            params={
                "api-version": "2018-02-01",
                "resource": "api://AzureADTokenExchange",
                "client_id": USER.client_id,
            },
            headers={"Metadata": "true"},
        ) as response:
            assertion = (await response.json())["access_token"]
        status, body = await exchange(http, emulator, assertion, tenant=OTHER_TENANT)
        elsewhere = await exchange(http, emulator, assertion, tenant="33333333-0000-0000-0000-0")
    assert status == 200, body
    assert claims_of(body["access_token"])["tid"] == OTHER_TENANT
    assert elsewhere[0] == 400 and elsewhere[1]["error_codes"] == [90002]  # not provisioned


async def test_the_command_line_serves_identities_and_federated_credentials(
    tmp_path: Path,
) -> None:
    apps = tmp_path / "apps.yaml"
    apps.write_text(
        f"""
apps:
  - tenant_id: {TENANT}
    client_id: {CLIENT}
    federated_credentials:
      - {{issuer: "{{emulator}}/oidc/k8s", subject: "{SUBJECT}", name: aks}}
managed_identities:
  - {{tenant_id: {TENANT}, client_id: {SYSTEM.client_id}, system_assigned: true}}
"""
    )
    state = tmp_path / "state"
    process = await start_cli(
        "--listen", "127.0.0.1:0", "--state-dir", str(state), "--apps", str(apps)
    )  # fmt: skip
    try:
        printed = await read_ready(process)
        emulator = _Remote(printed["login endpoint"], state / "ca.pem")
        variables = dict(
            pair.split("=", 1) for pair in printed["managed identity"].split(" (")[0].split()
        )
        issuer = printed["oidc issuer"].split()[0]
        assert issuer == f"{emulator.login_endpoint}/oidc/k8s"
        async with graph_client(emulator) as http:
            async with http.get(
                variables["IDENTITY_ENDPOINT"],
                params={"api-version": "2019-08-01", "resource": "https://graph.microsoft.com"},
                headers={"X-IDENTITY-HEADER": variables["IDENTITY_HEADER"]},
            ) as response:
                identity = await response.json()
            async with http.post(
                f"{emulator.login_endpoint}/_emulator/oidc/k8s/token", json={"subject": SUBJECT}
            ) as response:
                assertion = (await response.json())["token"]
            status, body = await exchange(http, emulator, assertion)
        assert claims_of(identity["access_token"])["appid"] == SYSTEM.client_id
        assert status == 200, body
        await stop_cli(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
