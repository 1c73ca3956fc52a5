""" "Sign in with Microsoft" on the console: the authorization-code flow with PKCE through a
configured tenant's app, against the emulator's Entra ID, with app roles and group IDs mapped
to operator and viewer."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.emulator import Emulator, EmulatorSettings, EmulatorUser, running_emulator
from tests.conftest import Logged
from tests.support.console import Browser, console_section
from tests.support.gateway import config_document, run_gateway, write_config

TENANT = "contoso-tenant"
VIEWER_GROUP = "5b1d4f43-2bde-4c5a-9d2e-3f7c1b0a9e11"
USERS = (
    EmulatorUser("olga@contoso.com", TENANT, roles=("Console.Operator",)),
    EmulatorUser("vera@contoso.com", TENANT, groups=(VIEWER_GROUP,)),
    EmulatorUser("nobody@contoso.com", TENANT),
)


@dataclass
class Setup:
    base: str
    emulator: Emulator
    trust: ssl.SSLContext


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    settings = EmulatorSettings(
        host="127.0.0.1", port=0, state_dir=tmp_path / "emulator", users=USERS
    )
    async with running_emulator(settings) as emulator:
        console = console_section(
            microsoft={
                "tenant": "contoso",
                "operators": ["Console.Operator"],
                "viewers": [VIEWER_GROUP],
            }
        )
        document = config_document(tmp_path, emulator, console=console)
        async with run_gateway(load_config(write_config(tmp_path, document))) as running:
            assert running.gateway.console is not None
            trust = ssl.create_default_context(cafile=str(emulator.ca_file))
            yield Setup(f"http://127.0.0.1:{running.gateway.console.port}", emulator, trust)


async def microsoft_sign_in(browser: Browser, setup: Setup, user: str) -> tuple[int, str]:
    """Follow the flow as a browser would: the console, Entra ID, back to the console."""
    status, _, response = await browser.get(f"/signin/microsoft?login_hint={user}&next=/queue")
    assert status == 303, status
    authorize = response.headers["Location"]
    assert "code_challenge=" in authorize and "code_challenge_method=S256" in authorize
    async with browser.http.get(authorize, allow_redirects=False, ssl=setup.trust) as answer:
        assert answer.status == 302, await answer.text()
        callback = answer.headers["Location"]
    assert callback.startswith(setup.base + "/signin/microsoft/callback?")
    status, page, _ = await browser.get(callback.removeprefix(setup.base))
    return status, page


async def test_app_roles_and_groups_make_operators_and_viewers(
    setup: Setup, logged: Logged
) -> None:
    for user, role in (("olga@contoso.com", "operator"), ("vera@contoso.com", "viewer")):
        browser = Browser(setup.base)
        try:
            status, _, _ = await browser.get("/signin")
            status, page = await microsoft_sign_in(browser, setup, user)
            assert status == 200 and f"Signed in as {user} ({role})" in page
            assert 'url=/queue">' in page  # moves on by itself (a same-site navigation)
            status, page, _ = await browser.get("/queue")
            assert status == 200 and f"{user} ({role})" in page
            assert 'type="checkbox"' in page or "No messages" in page
        finally:
            await browser.close()
    signins = logged("console_signin")
    assert [(e["user"], e["role"], e["via"]) for e in signins] == [
        ("olga@contoso.com", "operator", "microsoft"),
        ("vera@contoso.com", "viewer", "microsoft"),
    ]


async def test_an_account_without_a_console_role_is_refused(setup: Setup, logged: Logged) -> None:
    browser = Browser(setup.base)
    try:
        status, page = await microsoft_sign_in(browser, setup, "nobody@contoso.com")
        assert status == 403 and "has no console role" in page
        assert (await browser.get("/"))[0] == 303  # not signed in
        [failure] = logged("console_signin_failed")
        assert failure["user"] == "nobody@contoso.com"
    finally:
        await browser.close()


async def test_a_callback_that_belongs_to_no_sign_in_here_is_refused(setup: Setup) -> None:
    attacker, victim = Browser(setup.base), Browser(setup.base)
    try:
        # The attacker's own code, delivered to another browser (login CSRF): refused there.
        status, _, response = await attacker.get("/signin/microsoft?login_hint=olga@contoso.com")
        authorize = response.headers["Location"]
        async with attacker.http.get(authorize, allow_redirects=False, ssl=setup.trust) as answer:
            callback = answer.headers["Location"]
        status, page, _ = await victim.get(callback.removeprefix(setup.base))
        assert status == 401 and "start again" in page
        # A forged state in the browser that started a sign-in: refused too, and used up.
        await victim.get("/signin/microsoft?login_hint=olga@contoso.com")
        status, page, _ = await victim.get("/signin/microsoft/callback?code=abc&state=forged")
        assert status == 401 and "does not match" in page
        assert (await victim.get("/"))[0] == 303
        # The sign-in page offers the way in.
        _, page, _ = await victim.get("/signin")
        assert 'id="signin-microsoft"' in page
    finally:
        await attacker.close()
        await victim.close()
