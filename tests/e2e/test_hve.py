"""High Volume Email (`smtp_endpoint: hve`) through the emulator's SMTP stand-in acting as
smtp-hve.office365.com: an HVE account delivers to internal recipients; mail to outside
recipients, and mail from an account that is not an HVE account, is held with a reason that
says what to change — not retried for days, not bounced as the sender's fault."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_config
from gateway.emulator import Emulator, EmulatorSettings, EmulatorUser, running_emulator
from tests.conftest import Logged
from tests.support.gateway import config_document, run_gateway, write_config

ALERTS = "alerts@contoso.com"  # the HVE account


def message(sender: str, to: str) -> bytes:
    return (
        f"From: Alerts <{sender}>\r\nTo: {to}\r\nSubject: nightly report\r\n\r\nAll green.\r\n"
    ).encode()


@pytest.fixture
async def hve(tmp_path: Path) -> AsyncIterator[Emulator]:
    settings = EmulatorSettings(
        state_dir=tmp_path / "hve",
        smtp_port=0,
        users=(EmulatorUser("scanner@contoso.com", "contoso-tenant"),),
        smtp_hve_accounts=(ALERTS,),
    )
    async with running_emulator(settings) as running:
        yield running


def hve_config(tmp_path: Path, emulator: Emulator) -> Any:
    host, port = emulator.smtp_address
    document = config_document(tmp_path, emulator)
    document["tenants"][0].update(
        transport="smtp-oauth",
        smtp_endpoint=f"{host}:{port}",
        hve=True,  # the stand-in
    )
    document["delivery"].update(retry_initial="1h", retry_max="1h")
    return load_config(write_config(tmp_path, document))


async def test_an_hve_account_delivers_to_internal_recipients(
    tmp_path: Path, hve: Emulator
) -> None:
    async with run_gateway(hve_config(tmp_path, hve)) as gateway:
        assert await gateway.send(ALERTS, ["alice@contoso.com"], message(ALERTS, "a@x")) == {}
        await gateway.delivered(1)
    [delivered] = hve.delivered()
    assert (delivered.mode, delivered.mailbox) == ("smtp", ALERTS)
    assert delivered.envelope is not None and delivered.envelope.rcpt_to == ("alice@contoso.com",)


async def test_external_recipients_are_held_with_what_to_do(
    tmp_path: Path, hve: Emulator, logged: Logged
) -> None:
    async with run_gateway(hve_config(tmp_path, hve)) as gateway:
        external = ["partner@fabrikam.com"]
        assert await gateway.send(ALERTS, external, message(ALERTS, external[0])) == {}
        event = await gateway.next_event(30)
    assert event.result == "held"
    assert "outside the organisation: partner@fabrikam.com" in event.reason
    assert "transport: graph" in event.reason and "queue release" in event.reason
    assert hve.delivered() == []
    [held] = logged("held")
    assert held["reason"] == event.reason


async def test_an_account_that_is_not_an_hve_account_is_held_with_what_to_do(
    tmp_path: Path, hve: Emulator
) -> None:
    sender = "scanner@contoso.com"
    async with run_gateway(hve_config(tmp_path, hve)) as gateway:
        assert await gateway.send(sender, ["alice@contoso.com"], message(sender, "a@x")) == {}
        event = await gateway.next_event(30)
    assert event.result == "held"
    assert f"refused {sender} as the sender" in event.reason
    assert "not an HVE account" in event.reason
    assert f"Add-HVEAppAccess -Identity {sender}" in event.reason
    assert hve.delivered() == []
