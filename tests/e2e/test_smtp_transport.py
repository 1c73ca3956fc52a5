"""The SMTP OAuth transport end to end: gateway → emulator's smtp.office365.com stand-in with
STARTTLS and XOAUTH2, with app-only and delegated tokens, and its 4xx/5xx answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_config
from gateway.emulator import Emulator, EmulatorSettings, EmulatorUser, Faults, running_emulator
from tests.e2e.test_cli import run_cli
from tests.support.gateway import config_document, run_gateway, write_config

MESSAGE = (
    b"From: Scanner <scanner@contoso.com>\r\nTo: alice@contoso.com\r\n"
    b"Bcc: secret@contoso.com\r\nSubject: over SMTP\r\n\r\n.dot line\r\nbody\r\n"
)


@pytest.fixture
async def exchange(tmp_path: Path) -> AsyncIterator[Emulator]:
    settings = EmulatorSettings(
        state_dir=tmp_path / "exchange",
        smtp_port=0,
        users=(EmulatorUser("scanner@contoso.com", "contoso-tenant"),),
        device_code_interval=0,
    )
    async with running_emulator(settings) as running:
        yield running


def smtp_document(tmp_path: Path, emulator: Emulator, **tenant: Any) -> dict[str, Any]:
    host, port = emulator.smtp_address
    document = config_document(tmp_path, emulator)
    document["tenants"][0].update({"transport": "smtp-oauth",
                                   "smtp_endpoint": f"{host}:{port}", **tenant})
    document["delivery"].update(retry_initial="1h", retry_max="1h")
    return document


async def test_app_only_token_delivers_over_smtp_with_the_envelope(
    tmp_path: Path, exchange: Emulator
) -> None:
    config = load_config(write_config(tmp_path, smtp_document(tmp_path, exchange)))
    async with run_gateway(config) as gateway:
        envelope = ["alice@contoso.com", "bob@fabrikam.com"]
        await gateway.send("scanner@contoso.com", envelope, MESSAGE)
        [event] = await gateway.delivered(1)
    [delivered] = exchange.delivered()
    assert delivered.mode == "smtp"
    assert delivered.mailbox == "scanner@contoso.com"
    assert delivered.envelope is not None
    assert sorted(delivered.envelope.rcpt_to) == sorted(envelope)
    assert b"secret@contoso.com" not in delivered.mime  # the Bcc header does not travel
    assert delivered.mime.endswith(b"\r\n\r\n.dot line\r\nbody\r\n")  # transparency undone
    assert event.status == 250


async def test_delegated_sign_in_delivers_over_smtp(tmp_path: Path, exchange: Emulator) -> None:
    document = smtp_document(tmp_path, exchange, auth="delegated", client_id="public-app",
                             account="scanner@contoso.com")
    del document["tenants"][0]["client_secret"]
    path = write_config(tmp_path, document)
    login = await asyncio.to_thread(run_cli, "login", "contoso", "--config", str(path))
    assert login.returncode == 0, login.stderr
    async with run_gateway(load_config(path)) as gateway:
        await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE)
        await gateway.delivered(1)
    [delivered] = exchange.delivered()
    assert (delivered.mode, delivered.mailbox) == ("smtp", "scanner@contoso.com")


@pytest.mark.parametrize(
    ("reply", "result"),
    [("451 4.3.0 Temporary server error. Please try again later", "deferred"),
     ("554 5.6.0 Corrupt message content", "held")],
)
async def test_smtp_4xx_is_retried_and_5xx_is_held_with_the_servers_text(
    tmp_path: Path, exchange: Emulator, reply: str, result: str
) -> None:
    exchange.set_faults(Faults(smtp_fail_count=1, smtp_fail_at="data", smtp_fail_reply=reply))
    config = load_config(write_config(tmp_path, smtp_document(tmp_path, exchange)))
    async with run_gateway(config) as gateway:
        await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE)
        event = await gateway.next_event(30)
    assert event.result == result
    assert event.status == int(reply[:3])
    assert reply[4:9] in event.reason  # the server's own words reach the administrator
    assert exchange.delivered() == []
