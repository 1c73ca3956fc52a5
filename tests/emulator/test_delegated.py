"""Delegated sign-in against real msal: device code, authorization code with PKCE, refresh,
revocation, the consumers/organizations authorities, and /me/sendMail bound to the user."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import ssl
from collections.abc import AsyncIterator, Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import msal
import pytest
import requests
import yaml

from gateway.emulator import (
    MSA_TENANT_ID,
    Emulator,
    EmulatorApp,
    EmulatorSettings,
    EmulatorUser,
    SignInRefused,
    load_apps,
    load_users,
)
from gateway.emulator.cli import parse_user
from tests.emulator.conftest import StartEmulator
from tests.emulator.helpers import (
    CLIENT,
    DEVICE_CODE_GRANT,
    GRAPH_MAIL_SEND,
    PUBLIC_CLIENT,
    SECRET,
    SMTP_SEND,
    TENANT,
    bearer,
    get_token,
    graph_client,
    json_message,
    public_client,
    requests_session,
    sign_in,
    token_response,
)
from tests.emulator.test_login import claims_of

T = TypeVar("T")
ALICE = EmulatorUser("alice@contoso.com", TENANT)
CAROL = EmulatorUser("carol@contoso.com", TENANT, display_name="Carol C.")
BOB = EmulatorUser("bob@outlook.com", "consumers")
CONFIDENTIAL = EmulatorApp(TENANT, CLIENT, SECRET, roles=("Mail.Send",))
PUBLIC = EmulatorApp(TENANT, PUBLIC_CLIENT)
OTHER_PUBLIC = EmulatorApp(TENANT, "77777777-7777-7777-7777-777777777777")
REDIRECT = "http://localhost:8400/callback"


@pytest.fixture(autouse=True)
def _ca_bundle_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in test_login: a CA bundle in the environment must not defeat the session's verify."""
    if not (os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")):
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", ssl.get_default_verify_paths().openssl_cafile)


def settings(**overrides: Any) -> dict[str, Any]:
    """Emulator settings for sign-in tests: fast polling, short device codes (bounds msal)."""
    values: dict[str, Any] = {
        "apps": (CONFIDENTIAL, PUBLIC, OTHER_PUBLIC),
        "users": (ALICE, CAROL, BOB),
        "device_code_interval": 0,  # msal sleeps `interval` seconds between polls
        "device_code_pending_polls": 2,
        "device_code_lifetime": 30,  # msal polls until then if something goes wrong
    }
    values.update(overrides)
    return values


@pytest.fixture
async def emulator(start_emulator: StartEmulator) -> Emulator:
    return await start_emulator(**settings())


class Msal:
    """One PublicClientApplication (and its token cache) used from a worker thread."""

    def __init__(self, app: Any, session: requests.Session) -> None:
        self.app, self.session = app, session

    async def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(getattr(self.app, method), *args, **kwargs)

    async def run(self, function: Callable[[Any], T]) -> T:
        return await asyncio.to_thread(function, self.app)


@pytest.fixture
async def make_msal() -> AsyncIterator[Callable[..., Any]]:
    sessions: list[requests.Session] = []

    async def make(emulator: Emulator, *, tenant: str = TENANT, **kwargs: Any) -> Msal:
        session = requests_session(emulator)
        sessions.append(session)
        app = await asyncio.to_thread(public_client, emulator, session, tenant=tenant, **kwargs)
        return Msal(app, session)

    yield make
    for session in sessions:
        session.close()


async def device_login(client: Msal, scopes: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    flow: dict[str, Any] = await client("initiate_device_flow", scopes=scopes)
    assert "user_code" in flow, flow
    result: dict[str, Any] = await client("acquire_token_by_device_flow", flow)
    return flow, result


# -- device code ----------------------------------------------------------------------------


async def test_device_code_login_with_msal_polls_then_signs_in(
    emulator: Emulator, make_msal: Callable[..., Any]
) -> None:
    client = await make_msal(emulator)
    flow, result = await device_login(client, ["Mail.Send"])

    assert flow["interval"] == 0
    assert flow["verification_uri"] == f"{emulator.base_url}/devicelogin"
    assert flow["user_code"] in flow["message"]
    assert "access_token" in result, result
    claims = claims_of(result["access_token"])
    assert claims["aud"] == "https://graph.microsoft.com"
    assert claims["scp"] == "Mail.Send openid profile offline_access"
    assert claims["upn"] == claims["preferred_username"] == "alice@contoso.com"
    assert claims["oid"] == ALICE.object_id
    assert claims["tid"] == TENANT
    assert claims["appid"] == PUBLIC_CLIENT
    assert claims["idtyp"] == "user"
    assert result["id_token_claims"]["preferred_username"] == "alice@contoso.com"
    assert result["id_token_claims"]["aud"] == PUBLIC_CLIENT
    # Two answers authorization_pending, the third signs in (pending polls = 2).
    [issued] = emulator.device_codes()
    assert (issued.polls, issued.status, issued.user) == (3, "redeemed", ALICE)
    assert emulator.stats.token_requests_by_grant == {DEVICE_CODE_GRANT: 3}
    accounts = await client("get_accounts")
    assert [a["username"] for a in accounts] == ["alice@contoso.com"]
    assert accounts[0]["home_account_id"] == f"{ALICE.object_id}.{TENANT}"


async def test_device_code_declined(emulator: Emulator, make_msal: Callable[..., Any]) -> None:
    client = await make_msal(emulator)
    flow = await client("initiate_device_flow", scopes=["Mail.Send"])
    emulator.decline_device_code(flow["user_code"])
    result = await client("acquire_token_by_device_flow", flow)
    assert result["error"] == "authorization_declined"
    assert result["error_codes"] == [65004]
    assert await client("get_accounts") == []


async def test_device_code_expired_and_reused(emulator: Emulator) -> None:
    async with graph_client(emulator) as http:
        base = f"{emulator.login_endpoint}/{TENANT}/oauth2/v2.0"
        async with http.post(
            f"{base}/devicecode", data={"client_id": PUBLIC_CLIENT, "scope": "Mail.Send"}
        ) as response:
            flow = await response.json()
        poll = {"grant_type": DEVICE_CODE_GRANT, "client_id": PUBLIC_CLIENT, "device_code": ""}
        poll["device_code"] = flow["device_code"]
        status, body = await token_response(http, emulator, TENANT, poll)
        assert (status, body["error"], body["error_codes"]) == (
            400,
            "authorization_pending",
            [70016],
        )
        emulator.expire_device_code(flow["user_code"])
        status, body = await token_response(http, emulator, TENANT, poll)
        assert (status, body["error"], body["error_codes"]) == (400, "expired_token", [70020])
        assert "This device code has expired" in body["error_description"]

        token = await sign_in(http, emulator, username="carol@contoso.com")
        assert claims_of(token["access_token"])["name"] == "Carol C."
        redeemed = emulator.device_codes()[-1]
        poll["device_code"] = redeemed.device_code
        status, body = await token_response(http, emulator, TENANT, poll)
        assert (body["error"], body["error_codes"]) == ("invalid_grant", [54005])
        poll["device_code"] = "made-up"
        status, body = await token_response(http, emulator, TENANT, poll)
        assert (body["error"], body["error_codes"]) == ("bad_verification_code", [70000])


async def test_device_codes_are_steered_through_the_admin_endpoints(
    start_emulator: StartEmulator,
) -> None:
    emulator = await start_emulator(**settings(device_code_pending_polls=None))
    admin = f"{emulator.base_url}/_emulator"
    async with graph_client(emulator) as http:
        codes = []
        for _ in range(2):
            async with http.post(
                f"{emulator.login_endpoint}/organizations/oauth2/v2.0/devicecode",
                data={"client_id": PUBLIC_CLIENT, "scope": SMTP_SEND},
            ) as response:
                codes.append(await response.json())
        async with http.get(f"{emulator.base_url}/devicelogin") as response:
            assert "approve" in await response.text()
        async with http.get(f"{admin}/users") as response:
            directory = await response.json()
        assert directory["open"] is False
        assert [(u["username"], u["msa"]) for u in directory["users"]] == [
            ("alice@contoso.com", False),
            ("carol@contoso.com", False),
            ("bob@outlook.com", True),
        ]
        async with http.get(f"{admin}/devicecodes") as response:
            listed = await response.json()
        assert [(c["user_code"], c["status"]) for c in listed] == [
            (codes[0]["user_code"], "pending"),
            (codes[1]["user_code"], "pending"),
        ]
        poll = {
            "grant_type": DEVICE_CODE_GRANT,
            "client_id": PUBLIC_CLIENT,
            "device_code": codes[0]["device_code"],
        }
        for _ in range(3):  # manual approval: pending however often it is polled
            status, body = await token_response(http, emulator, "organizations", poll)
            assert body["error"] == "authorization_pending"

        first = f"{admin}/devicecodes/{codes[0]['user_code']}"
        async with http.post(f"{first}/approve", json={"username": "bob@outlook.com"}) as response:
            assert response.status == 400  # a personal account cannot use /organizations
            assert "AADSTS50020" in (await response.json())["error"]
        async with http.post(
            f"{first}/approve", json={"username": "carol@contoso.com"}
        ) as response:
            assert response.status == 200
            assert (await response.json())["username"] == "carol@contoso.com"
        async with http.post(f"{first}/decline") as response:
            assert response.status == 409
        async with http.post(f"{admin}/devicecodes/NOSUCHCODE/approve") as response:
            assert response.status == 404
        async with http.post(f"{admin}/devicecodes/{codes[1]['user_code']}/decline") as response:
            assert (await response.json())["status"] == "declined"

        status, body = await token_response(http, emulator, "organizations", poll)
        assert status == 200
        claims = claims_of(body["access_token"])
        assert claims["upn"] == "carol@contoso.com"
        assert claims["aud"] == "https://outlook.office.com"
        assert claims["scp"] == "SMTP.Send"
        assert "refresh_token" not in body  # no offline_access asked for
        assert "id_token" not in body  # no openid asked for


# -- authorization code with PKCE -------------------------------------------------------------


class _FormFields(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form":
            self.action = values.get("action") or ""
        elif tag == "input" and values.get("type") == "hidden":
            self.fields[values.get("name") or ""] = values.get("value") or ""


async def follow_authorize(emulator: Emulator, auth_uri: str) -> dict[str, str]:
    """What a browser would bring back to the redirect URI (the emulator approves at once):
    the query of the 302's Location, or the fields of the auto-posting form (form_post)."""
    async with (
        graph_client(emulator) as http,
        http.get(auth_uri, allow_redirects=False) as response,
    ):
        if response.status == 200:
            form = _FormFields()
            form.feed(await response.text())
            assert form.action == REDIRECT
            return form.fields
        assert response.status == 302, await response.text()
        location = response.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    return dict(parse_qsl(urlsplit(location).query))


@pytest.mark.parametrize("response_mode", ["query", "form_post"])
async def test_auth_code_flow_with_pkce_through_msal(
    emulator: Emulator, make_msal: Callable[..., Any], response_mode: str
) -> None:
    client = await make_msal(emulator)
    kwargs: dict[str, Any] = {"response_mode": "form_post"} if response_mode == "form_post" else {}
    with contextlib.ExitStack() as stack:
        if response_mode == "query":  # msal recommends form_post, with a UserWarning
            stack.enter_context(pytest.warns(UserWarning, match="form_post"))
        flow = await client(
            "initiate_auth_code_flow",
            scopes=[SMTP_SEND],
            redirect_uri=REDIRECT,
            login_hint="carol@contoso.com",
            **kwargs,
        )
    query = dict(parse_qsl(urlsplit(flow["auth_uri"]).query))
    assert query["code_challenge_method"] == "S256"
    auth_response = await follow_authorize(emulator, flow["auth_uri"])
    assert auth_response["state"] == flow["state"]
    assert "client_info" in auth_response

    # msal checks the state and the id token's nonce itself.
    result = await client("acquire_token_by_auth_code_flow", flow, auth_response)
    assert "access_token" in result, result
    claims = claims_of(result["access_token"])
    assert claims["aud"] == "https://outlook.office.com"
    assert claims["scp"] == "SMTP.Send openid profile offline_access"
    assert claims["upn"] == "carol@contoso.com"
    assert [a["username"] for a in await client("get_accounts")] == ["carol@contoso.com"]
    assert emulator.stats.token_requests_by_grant == {"authorization_code": 1}

    # Codes are single use.
    async with graph_client(emulator) as http:
        status, body = await token_response(
            http,
            emulator,
            TENANT,
            {
                "grant_type": "authorization_code",
                "client_id": PUBLIC_CLIENT,
                "code": auth_response["code"],
                "redirect_uri": REDIRECT,
                "code_verifier": flow["code_verifier"],
                "scope": SMTP_SEND,
            },
        )
    assert (status, body["error"], body["error_codes"]) == (400, "invalid_grant", [54005])


def pkce_pair() -> tuple[str, str]:
    verifier = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


async def test_auth_code_redemption_checks_verifier_redirect_and_client(emulator: Emulator) -> None:
    verifier, challenge = pkce_pair()
    authorize = f"{emulator.login_endpoint}/{TENANT}/oauth2/v2.0/authorize"
    params = {
        "client_id": PUBLIC_CLIENT,
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "scope": f"{GRAPH_MAIL_SEND} offline_access",
        "state": "s1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    async with graph_client(emulator) as http:

        async def code() -> str:
            async with http.get(authorize, params=params, allow_redirects=False) as response:
                location = response.headers["Location"]
            return dict(parse_qsl(urlsplit(location).query))["code"]

        form = {
            "grant_type": "authorization_code",
            "client_id": PUBLIC_CLIENT,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        }
        cases = [
            ({"code_verifier": "not-the-verifier"}, "invalid_grant", 501481),
            ({"redirect_uri": "http://localhost:9/other"}, "invalid_grant", 50011),
            ({"client_id": OTHER_PUBLIC.client_id}, "invalid_grant", 70000),
            ({"code_verifier": ""}, "invalid_request", 900144),
        ]
        for change, error, aadsts in cases:
            status, body = await token_response(
                http, emulator, TENANT, {**form, "code": await code(), **change}
            )
            assert (status, body["error"], body["error_codes"]) == (400, error, [aadsts]), change
        status, body = await token_response(http, emulator, TENANT, {**form, "code": await code()})
        assert status == 200
        assert "refresh_token" in body
        assert "id_token" not in body
        assert claims_of(body["access_token"])["upn"] == "alice@contoso.com"  # first user


@pytest.mark.parametrize(
    ("change", "where", "aadsts"),
    [
        ({"redirect_uri": "https://app.example.com/cb"}, "page", 50011),
        ({"redirect_uri": "http://192.168.1.5:8400/cb"}, "page", 50011),
        ({"client_id": "unknown-client"}, "page", 700016),
        ({"code_challenge": ""}, "redirect", 9002325),
        ({"response_type": "token"}, "redirect", 700054),
        ({"scope": f"{GRAPH_MAIL_SEND} {SMTP_SEND}"}, "redirect", 28000),
        ({"login_hint": "bob@outlook.com"}, "redirect", 50020),  # an MSA user in a work tenant
        ({"login_hint": "nobody@contoso.com"}, "redirect", 50034),
    ],
)
async def test_authorize_errors(
    emulator: Emulator, change: dict[str, str], where: str, aadsts: int
) -> None:
    _, challenge = pkce_pair()
    params = {
        "client_id": PUBLIC_CLIENT,
        "response_type": "code",
        "redirect_uri": "http://127.0.0.1:8400/cb",
        "scope": "Mail.Send",
        "state": "xyz",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **change,
    }
    url = f"{emulator.login_endpoint}/{TENANT}/oauth2/v2.0/authorize"
    async with (
        graph_client(emulator) as http,
        http.get(url, params=params, allow_redirects=False) as response,
    ):
        if where == "page":
            assert response.status == 400
            assert f"AADSTS{aadsts}" in await response.text()
            return
        assert response.status == 302
        answer = dict(parse_qsl(urlsplit(response.headers["Location"]).query))
    assert answer["state"] == "xyz"
    assert answer["error_description"].startswith(f"AADSTS{aadsts}:")
    assert "code" not in answer


# -- refresh tokens, revocation -------------------------------------------------------------


async def test_silent_refresh_after_the_access_token_expires(
    start_emulator: StartEmulator, make_msal: Callable[..., Any]
) -> None:
    # msal treats an access token with under 5 minutes left as expired: 60 s forces a refresh.
    emulator = await start_emulator(**settings(token_lifetime=60, device_code_pending_polls=0))
    client = await make_msal(emulator)
    _, first = await device_login(client, ["Mail.Send"])
    [account] = await client("get_accounts")
    cache = client.app.token_cache
    old_refresh = {
        rt["secret"] for rt in cache.search(msal.TokenCache.CredentialType.REFRESH_TOKEN)
    }

    second = await client("acquire_token_silent", ["Mail.Send"], account=account)

    assert second is not None and "access_token" in second
    assert second["access_token"] != first["access_token"]
    assert claims_of(second["access_token"])["upn"] == "alice@contoso.com"
    assert emulator.stats.token_requests_by_grant["refresh_token"] == 1
    new_refresh = {
        rt["secret"] for rt in cache.search(msal.TokenCache.CredentialType.REFRESH_TOKEN)
    }
    assert new_refresh and new_refresh != old_refresh  # rotated


async def test_cached_token_is_used_while_valid(
    emulator: Emulator, make_msal: Callable[..., Any]
) -> None:
    client = await make_msal(emulator)
    _, first = await device_login(client, ["Mail.Send"])
    [account] = await client("get_accounts")
    again = await client("acquire_token_silent", ["Mail.Send"], account=account)
    assert again["access_token"] == first["access_token"]
    assert "refresh_token" not in emulator.stats.token_requests_by_grant


async def test_revoked_refresh_token_fails_until_a_new_sign_in(
    start_emulator: StartEmulator, make_msal: Callable[..., Any]
) -> None:
    emulator = await start_emulator(**settings(token_lifetime=60, device_code_pending_polls=0))
    client = await make_msal(emulator)
    await device_login(client, ["Mail.Send"])
    [account] = await client("get_accounts")

    async with graph_client(emulator) as http:
        url = f"{emulator.base_url}/_emulator/users/Alice@Contoso.com/revoke"
        async with http.post(url) as response:
            assert await response.json() == {
                "username": "alice@contoso.com",
                "client_id": None,
                "revoked": 1,
            }

    failed = await client("acquire_token_silent_with_error", ["Mail.Send"], account=account)
    assert failed["error"] == "invalid_grant"
    assert failed["error_codes"] == [50173]
    assert "revoked" in failed["error_description"]
    assert "TokensValidFrom" in failed["error_description"]

    _, again = await device_login(client, ["Mail.Send"])  # a new sign-in works again
    assert "access_token" in again
    [account] = await client("get_accounts")
    refreshed = await client("acquire_token_silent_with_error", ["Mail.Send"], account=account)
    assert "access_token" in refreshed, refreshed


async def test_revocation_for_one_client_only(emulator: Emulator) -> None:
    async with graph_client(emulator) as http:
        tokens = {
            client_id: await sign_in(http, emulator, client_id=client_id)
            for client_id in (PUBLIC_CLIENT, OTHER_PUBLIC.client_id)
        }
        assert emulator.revoke_sign_ins("alice@contoso.com", PUBLIC_CLIENT) == 1
        assert emulator.revoke_sign_ins("alice@contoso.com", PUBLIC_CLIENT) == 0  # already
        answers = {}
        for client_id, token in tokens.items():
            answers[client_id] = await token_response(
                http,
                emulator,
                TENANT,
                {
                    "grant_type": "refresh_token",
                    "client_id": client_id,
                    "refresh_token": token["refresh_token"],
                    "scope": f"{SMTP_SEND} offline_access openid profile",
                },
            )
    status, body = answers[PUBLIC_CLIENT]
    assert (status, body["error"], body["error_codes"]) == (400, "invalid_grant", [50173])
    status, body = answers[OTHER_PUBLIC.client_id]
    assert status == 200
    # A refresh token of a Graph sign-in gets a token for another resource (SMTP), as Entra's.
    assert claims_of(body["access_token"])["aud"] == "https://outlook.office.com"
    assert body["refresh_token"] != tokens[OTHER_PUBLIC.client_id]["refresh_token"]


async def test_refresh_token_errors(start_emulator: StartEmulator) -> None:
    emulator = await start_emulator(**settings(single_use_refresh_tokens=True))
    async with graph_client(emulator) as http:
        token = await sign_in(http, emulator)
        form = {
            "grant_type": "refresh_token",
            "client_id": PUBLIC_CLIENT,
            "refresh_token": token["refresh_token"],
            "scope": "Mail.Send offline_access",
        }
        results = [await token_response(http, emulator, TENANT, form) for _ in range(2)]
        other = await token_response(
            http, emulator, TENANT, {**form, "client_id": OTHER_PUBLIC.client_id}
        )
        unknown = await token_response(http, emulator, TENANT, {**form, "refresh_token": "x"})
    assert results[0][0] == 200
    assert (results[1][1]["error"], results[1][1]["error_codes"]) == ("invalid_grant", [70000])
    assert other[1]["error_codes"] == [70000]
    assert unknown[1]["error_codes"] == [9002313]


async def test_refresh_token_expiry(start_emulator: StartEmulator) -> None:
    emulator = await start_emulator(**settings(refresh_token_lifetime=0))
    async with graph_client(emulator) as http:
        token = await sign_in(http, emulator)
        status, body = await token_response(
            http,
            emulator,
            TENANT,
            {
                "grant_type": "refresh_token",
                "client_id": PUBLIC_CLIENT,
                "refresh_token": token["refresh_token"],
                "scope": "Mail.Send",
            },
        )
    assert (status, body["error"], body["error_codes"]) == (400, "invalid_grant", [700082])
    assert "expired due to inactivity" in body["error_description"]


# -- authorities, clients, scopes --------------------------------------------------------------


async def test_consumers_authority_signs_in_personal_accounts_only(
    emulator: Emulator, make_msal: Callable[..., Any]
) -> None:
    client = await make_msal(emulator, tenant="consumers")
    _, result = await device_login(client, [SMTP_SEND])
    assert "access_token" in result, result
    claims = claims_of(result["access_token"])
    assert claims["preferred_username"] == "bob@outlook.com"
    assert "upn" not in claims
    assert claims["tid"] == MSA_TENANT_ID
    assert claims["aud"] == "https://outlook.office.com"
    assert [a["username"] for a in await client("get_accounts")] == ["bob@outlook.com"]

    flow = await client("initiate_device_flow", scopes=["Mail.Send"])
    with pytest.raises(SignInRefused) as refused:
        emulator.approve_device_code(flow["user_code"], "alice@contoso.com")
    assert refused.value.code == 50020


async def test_organizations_and_common_authorities(
    emulator: Emulator, make_msal: Callable[..., Any]
) -> None:
    organizations = await make_msal(emulator, tenant="organizations")
    _, result = await device_login(organizations, ["Mail.Send"])
    assert claims_of(result["access_token"])["upn"] == "alice@contoso.com"

    async with graph_client(emulator) as http:
        token = await sign_in(http, emulator, tenant="common", username="bob@outlook.com")
        assert claims_of(token["access_token"])["tid"] == MSA_TENANT_ID
        token = await sign_in(http, emulator, tenant=MSA_TENANT_ID)
        assert claims_of(token["access_token"])["preferred_username"] == "bob@outlook.com"


async def test_open_mode_signs_in_any_username(
    start_emulator: StartEmulator, make_msal: Callable[..., Any]
) -> None:
    emulator = await start_emulator(device_code_interval=0, device_code_pending_polls=0)
    async with graph_client(emulator) as http:
        token = await sign_in(http, emulator, username="Dave@Fabrikam.com", client_id="any-app")
        claims = claims_of(token["access_token"])
        assert (claims["upn"], claims["tid"]) == ("dave@fabrikam.com", TENANT)
        token = await sign_in(http, emulator, tenant="consumers", client_id="any-app")
        assert claims_of(token["access_token"])["preferred_username"] == "user@outlook.com"
    client = await make_msal(emulator, tenant="organizations", client_id="some-app")
    _, result = await device_login(client, ["Mail.Send"])
    assert claims_of(result["access_token"])["upn"] == "user@contoso.com"


async def test_client_checks(emulator: Emulator) -> None:
    devicecode = f"{emulator.login_endpoint}/{TENANT}/oauth2/v2.0/devicecode"
    async with graph_client(emulator) as http:
        async with http.post(devicecode, data={"client_id": "nope", "scope": "Mail.Send"}) as r:
            body = await r.json()
            assert (r.status, body["error_codes"]) == (400, [700016])
        async with http.post(
            devicecode, data={"client_id": PUBLIC_CLIENT, "scope": f"{GRAPH_MAIL_SEND} {SMTP_SEND}"}
        ) as r:
            body = await r.json()
            assert (r.status, body["error"], body["error_codes"]) == (400, "invalid_scope", [28000])
        unknown_tenant = f"{emulator.login_endpoint}/99999999-0000-0000-0000-000000000000"
        async with http.post(
            f"{unknown_tenant}/oauth2/v2.0/devicecode",
            data={"client_id": PUBLIC_CLIENT, "scope": "Mail.Send"},
        ) as r:
            assert (await r.json())["error_codes"] == [90002]

        # A confidential app (it has a secret) must prove it even for delegated grants.
        async with http.post(devicecode, data={"client_id": CLIENT, "scope": "Mail.Send"}) as r:
            flow = await r.json()
        emulator.approve_device_code(flow["user_code"])
        poll = {
            "grant_type": DEVICE_CODE_GRANT,
            "client_id": CLIENT,
            "device_code": flow["device_code"],
        }
        status, body = await token_response(http, emulator, TENANT, poll)
        assert (status, body["error"], body["error_codes"]) == (401, "invalid_client", [7000218])
        status, body = await token_response(http, emulator, TENANT, {**poll, "client_secret": "x"})
        assert body["error_codes"] == [7000215]
        status, body = await token_response(
            http, emulator, TENANT, {**poll, "client_secret": SECRET}
        )
        assert status == 200
        assert claims_of(body["access_token"])["appid"] == CLIENT


# -- /me/sendMail ----------------------------------------------------------------------------


async def test_me_send_mail_is_the_signed_in_users_mailbox(emulator: Emulator) -> None:
    graph = emulator.graph_endpoint
    async with graph_client(emulator) as http:
        alice = (await sign_in(http, emulator))["access_token"]
        for url in (
            f"{graph}/me/sendMail",
            f"{graph}/users/Alice@contoso.com/sendMail",
            f"{graph}/users/{ALICE.object_id}/sendMail",
        ):
            async with http.post(
                url, json={"message": json_message()}, headers=bearer(alice)
            ) as response:
                assert response.status == 202, await response.text()

        async with http.post(
            f"{graph}/users/carol@contoso.com/sendMail",
            json={"message": json_message()},
            headers=bearer(alice),
        ) as response:
            assert response.status == 403
            assert (await response.json())["error"]["code"] == "ErrorAccessDenied"

        reader = (await sign_in(http, emulator, scope="User.Read openid"))["access_token"]
        smtp_only = (await sign_in(http, emulator, scope=SMTP_SEND))["access_token"]
        app_only = await get_token(http, emulator)
        answers = {}
        for name, token in (("reader", reader), ("smtp", smtp_only), ("app", app_only)):
            async with http.post(
                f"{graph}/me/sendMail", json={"message": json_message()}, headers=bearer(token)
            ) as response:
                answers[name] = (response.status, (await response.json())["error"]["code"])
    assert answers == {
        "reader": (403, "ErrorAccessDenied"),  # no Mail.Send in scp
        "smtp": (401, "InvalidAuthenticationToken"),  # an Exchange token is not for Graph
        "app": (400, "BadRequest"),  # /me needs a signed-in user
    }
    delivered = emulator.delivered()
    assert [m.mailbox for m in delivered] == ["alice@contoso.com"] * 3
    assert {m.client_id for m in delivered} == {PUBLIC_CLIENT}
    assert {m.tenant_id for m in delivered} == {TENANT}


# -- configuration --------------------------------------------------------------------------


def test_users_from_the_apps_file(tmp_path: Path) -> None:
    path = tmp_path / "apps.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apps": [{"tenant_id": "contoso-tenant", "client_id": "gw", "public_client": True}],
                "users": [
                    {"username": "Alice@Contoso.com", "tenant_id": "contoso-tenant"},
                    {"username": "bob@outlook.com", "tenant_id": "consumers", "display_name": "B"},
                ],
            }
        )
    )
    [app] = load_apps(path)
    assert app.is_public_client
    alice, bob = load_users(path)
    assert (alice.username, alice.tenant_id, alice.is_msa) == (
        "alice@contoso.com",
        "contoso-tenant",
        False,
    )
    assert (bob.tenant_id, bob.is_msa, bob.display_name) == (MSA_TENANT_ID, True, "B")

    path.write_text(yaml.safe_dump({"users": [{"username": "x@y.z"}]}))
    with pytest.raises(ValueError, match=r"users\[0\]: username and tenant_id are required"):
        load_users(path)
    path.write_text(yaml.safe_dump([{"tenant_id": "t", "client_id": "c"}]))
    assert load_users(path) == ()


def test_user_and_settings_validation(tmp_path: Path) -> None:
    assert not EmulatorApp("t", "c", "secret").is_public_client
    assert EmulatorApp("t", "c", "secret", public_client=True).is_public_client
    with pytest.raises(ValueError, match="name@domain"):
        EmulatorUser("alice", "t")
    with pytest.raises(ValueError, match="not a tenant a user can belong to"):
        EmulatorUser("a@b.c", "organizations")
    with pytest.raises(ValueError, match=r"users listed twice: alice@contoso\.com"):
        EmulatorSettings(state_dir=tmp_path, users=(ALICE, EmulatorUser("ALICE@contoso.com", "x")))
    with pytest.raises(ValueError, match="device_code_interval must not be negative"):
        EmulatorSettings(state_dir=tmp_path, device_code_interval=-1)
    assert parse_user("bob@outlook.com=consumers").tenant_id == MSA_TENANT_ID
