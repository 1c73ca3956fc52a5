"""Delegated tenants end to end: `login` (device code or browser), /me/sendMail, a dead refresh
token deferring mail until a new login, personal accounts, and the token cache file."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msal
import pytest

from gateway.config import load_config
from gateway.emulator import Emulator, EmulatorSettings, EmulatorUser, running_emulator
from gateway.entra.delegated import read_cache, write_cache
from tests.e2e.test_cli import run_cli
from tests.support.gateway import config_document, run_gateway, write_config

MESSAGE = (
    b"From: Alice <alice@contoso.com>\r\nTo: bob@fabrikam.com\r\nSubject: from alice\r\n"
    b"\r\nSent by the gateway as the signed-in user.\r\n"
)


@pytest.fixture
async def entra(tmp_path: Path) -> AsyncIterator[Emulator]:
    """An emulator with a work account and a personal account, fast device-code polling and
    access tokens that are always due for a refresh (so every delivery uses the refresh
    token, and a revocation shows at once)."""
    settings = EmulatorSettings(
        state_dir=tmp_path / "entra",
        users=(
            EmulatorUser("alice@contoso.com", "contoso-tenant"),
            EmulatorUser("bob@outlook.com", "consumers"),
        ),
        device_code_interval=0,
        device_code_pending_polls=1,
        token_lifetime=60,
    )
    async with running_emulator(settings) as running:
        yield running


def delegated_document(tmp_path: Path, emulator: Emulator, **tenant: Any) -> dict[str, Any]:
    document = config_document(tmp_path, emulator)
    entry = document["tenants"][0]
    del entry["client_secret"]
    entry.update(
        {"auth": "delegated", "client_id": "public-app", "account": "alice@contoso.com", **tenant}
    )
    document["delivery"].update(retry_initial="1h", retry_max="1h")
    document["http"] = {"listen": "127.0.0.1:0"}
    return document


async def login(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run_cli, "login", "contoso", "--config", str(config), *extra)


@pytest.mark.parametrize("authority", ["contoso-tenant", "organizations"])
async def test_device_code_login_then_the_daemon_sends_as_the_user(
    tmp_path: Path, entra: Emulator, authority: str
) -> None:
    config = write_config(tmp_path, delegated_document(tmp_path, entra, tenant_id=authority))
    signed_in = await login(config)
    assert signed_in.returncode == 0, signed_in.stderr
    assert "enter the code" in signed_in.stdout.lower() or "devicelogin" in signed_in.stdout
    assert "signed in as alice@contoso.com" in signed_in.stdout
    cache = tmp_path / "tokens" / "contoso.json"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert json.loads(cache.read_text())["RefreshToken"]  # what the daemon signs in with

    async with run_gateway(load_config(config)) as gateway:
        await gateway.send("alice@contoso.com", ["bob@fabrikam.com"], MESSAGE)
        [event] = await gateway.delivered(1)
        refused = await gateway.session(
            lambda client: (client.ehlo("x"), client.mail("carol@contoso.com"))[1]
        )
    assert event.mailbox == "alice@contoso.com"
    [delivered] = entra.delivered()
    assert delivered.mailbox == "alice@contoso.com"  # /me/sendMail as the signed-in user
    assert delivered.recipients["to"] == ["bob@fabrikam.com"]
    assert refused[0] == 550  # the route sends only as the signed-in account


async def test_a_revoked_sign_in_defers_mail_until_a_new_login(
    tmp_path: Path, entra: Emulator
) -> None:
    config = write_config(tmp_path, delegated_document(tmp_path, entra))
    assert (await login(config)).returncode == 0
    entra.revoke_sign_ins("alice@contoso.com")
    async with run_gateway(load_config(config)) as gateway:
        await gateway.send("alice@contoso.com", ["bob@fabrikam.com"], MESSAGE)
        event = await gateway.next_event(30)
        assert event.result == "deferred"  # never bounced: the administrator must act
        assert "smtp-graph-gateway login contoso" in event.reason
        assert gateway.gateway.health is not None
        url = f"http://127.0.0.1:{gateway.gateway.health.port}/readyz"
        ready = await asyncio.to_thread(_get_json, url)
        assert ready["status"] == "not ready"
        assert "login contoso" in ready["problems"]["tenant:contoso"]

        check = await asyncio.to_thread(run_cli, "check", "--config", str(config))
        assert check.returncode == 1
        assert "smtp-graph-gateway login contoso" in check.stdout

        relogin = await login(config)  # while the daemon runs
        assert relogin.returncode == 0, relogin.stderr
        assert "retries 1 queued message" in relogin.stdout
        [delivered_event] = await gateway.delivered(1, timeout=30)
    assert delivered_event.queue_id == event.queue_id
    assert [m.mailbox for m in entra.delivered()] == ["alice@contoso.com"]


def _get_json(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:  # 503: the body still says why
        return json.loads(error.read())


async def test_browser_login_with_pkce_and_a_personal_account(
    tmp_path: Path, entra: Emulator
) -> None:
    document = delegated_document(
        tmp_path, entra, account="bob@outlook.com", domains=["outlook.com"]
    )
    del document["tenants"][0]["tenant_id"]  # blank: personal Microsoft accounts (consumers)
    config = write_config(tmp_path, document)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "login",
        "contoso",
        "--config",
        str(config),
        "--browser",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(30):
            line = b""
            while b"/oauth2/v2.0/authorize" not in line:
                line = await process.stdout.readline()
                assert line, "login ended without printing the sign-in address"
            authorize = line.decode().strip()
            assert "/consumers/" in authorize and "code_challenge=" in authorize
            redirect = await asyncio.to_thread(_follow_to_localhost, authorize, entra)
            assert redirect.startswith("http://localhost:")
            page = await asyncio.to_thread(_get_text, redirect)
            assert "Signed in" in page
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    assert b"signed in as bob@outlook.com" in out

    async with run_gateway(load_config(config)) as gateway:
        message = MESSAGE.replace(b"Alice <alice@contoso.com>", b"bob@outlook.com")
        await gateway.send("bob@outlook.com", ["carol@fabrikam.com"], message)
        await gateway.delivered(1)
    [delivered] = entra.delivered()
    assert delivered.mailbox == "bob@outlook.com"


def _follow_to_localhost(authorize: str, entra: Emulator) -> str:
    """Play the browser at the emulator's sign-in page: the 302 to the redirect URI."""
    context = ssl.create_default_context(cafile=str(entra.ca_file))

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPSHandler(context=context))
    try:
        opener.open(authorize, timeout=10)
    except urllib.error.HTTPError as error:
        assert error.code == 302, error.code
        return str(error.headers["Location"])
    raise AssertionError("the sign-in page did not redirect")


def _get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def test_the_token_cache_survives_a_crash_during_a_write(tmp_path: Path) -> None:
    path = tmp_path / "tokens" / "contoso.json"
    caches = []
    for marker in ("first", "second"):
        cache = msal.SerializableTokenCache()
        cache.deserialize(json.dumps({"AppMetadata": {marker: {"padding": marker * 200_000}}}))
        caches.append(cache)
    write_cache(path, caches[0])
    expected = {cache.serialize() for cache in caches}
    script = (
        "import json, msal, sys\n"
        "from pathlib import Path\n"
        "from gateway.entra.delegated import write_cache\n"
        "caches = []\n"
        "for marker in ('first', 'second'):\n"
        "    cache = msal.SerializableTokenCache()\n"
        "    cache.deserialize(json.dumps({'AppMetadata': {marker: {'padding': marker * 200_000}}}))\n"
        "    caches.append(cache)\n"
        "print('ready', flush=True)\n"
        "n = 0\n"
        "while True:\n"
        "    write_cache(Path(sys.argv[1]), caches[n % 2]); n += 1\n"
    )
    for round_number in range(8):
        writer = subprocess.Popen(
            [sys.executable, "-c", script, str(path)],
            stdout=subprocess.PIPE,
            cwd=Path(__file__).parents[2],
        )
        assert writer.stdout is not None
        assert writer.stdout.readline() == b"ready\n"
        time.sleep(0.01 + round_number * 0.013)  # kill it somewhere in a write
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
        writer.stdout.close()
        assert read_cache(path).serialize() in expected  # the old cache or the new, whole
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    leftovers = [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) <= 8  # a killed writer may leave its temporary file, never the cache
    assert os.access(path, os.R_OK)
