"""`save_to_sent_items: false`: a scanner's mailbox keeps no copy of every scan in Sent Items.
What Graph is asked (the emulator records `saveToSentItems`), per tenant, client and sender;
signed mail and the large-message path, which cannot skip Sent Items, say so in the log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.config import load_config
from gateway.emulator import Emulator, EmulatorSettings, EmulatorUser, running_emulator
from tests.conftest import Logged
from tests.e2e.test_conversion import large_config, scan
from tests.e2e.test_pipeline import MESSAGE
from tests.support.corpus import CORPUS, smime_verify
from tests.support.gateway import config_document, run_gateway, write_config

MIB = 1024 * 1024


def sent_items_config(tmp_path: Path, emulator: Emulator, **sections: Any) -> Any:
    document = config_document(tmp_path, emulator, **sections)
    document["tenants"][0]["save_to_sent_items"] = False
    document["routing"] = {"addresses": {"audit@contoso.com": {"save_to_sent_items": True}}}
    return load_config(write_config(tmp_path, document))


async def test_a_tenant_that_keeps_no_copy_sends_json_with_save_to_sent_items_false(
    tmp_path: Path, emulator: Emulator
) -> None:
    """Auto mode would send this small message as MIME; MIME cannot skip Sent Items, so it goes
    as JSON. A sender whose own setting keeps a copy still goes as MIME."""
    async with run_gateway(sent_items_config(tmp_path, emulator)) as gateway:
        assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE) == {}
        await gateway.delivered(1)
        audit = MESSAGE.replace(b"scanner@contoso.com", b"audit@contoso.com")
        assert await gateway.send("audit@contoso.com", ["alice@contoso.com"], audit) == {}
        await gateway.delivered(1)
    scanner, auditor = emulator.delivered()
    assert (scanner.mailbox, scanner.mode, scanner.save_to_sent_items) == (
        "scanner@contoso.com",
        "json",
        False,
    )
    assert scanner.subject == "Scan from MFP-3F"
    assert (auditor.mailbox, auditor.mode, auditor.save_to_sent_items) == (
        "audit@contoso.com",
        "mime",
        True,
    )


async def test_a_client_that_keeps_no_copy_overrides_its_tenant(
    tmp_path: Path, emulator: Emulator
) -> None:
    clients = [
        {
            "name": "scanners",
            "networks": ["127.0.0.1"],
            "senders": ["*@contoso.com"],
            "save_to_sent_items": False,
        }
    ]
    config = load_config(
        write_config(tmp_path, config_document(tmp_path, emulator, clients=clients))
    )
    async with run_gateway(config) as gateway:
        assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE) == {}
        await gateway.delivered(1)
    [delivered] = emulator.delivered()
    assert (delivered.mode, delivered.save_to_sent_items) == ("json", False)


async def test_signed_mail_is_kept_in_sent_items_and_the_log_says_why(
    tmp_path: Path, emulator: Emulator, logged: Logged
) -> None:
    signed = (CORPUS / "app-smime-signed.eml").read_bytes().replace(b"\r\n", b"\n")
    signed = signed.replace(b"\n", b"\r\n")
    async with run_gateway(sent_items_config(tmp_path, emulator)) as gateway:
        assert await gateway.send("payroll@contoso.com", ["hr@contoso.com"], signed) == {}
        await gateway.delivered(1)
    [delivered] = emulator.delivered()
    assert (delivered.mode, delivered.save_to_sent_items) == ("mime", True)
    assert smime_verify(delivered.mime) is None
    [kept] = logged("sent_items_kept")
    assert "signed or encrypted" in kept["reason"] and "save_to_sent_items" in kept["reason"]


async def test_the_large_message_path_is_kept_in_sent_items_and_the_log_says_why(
    tmp_path: Path, emulator: Emulator, logged: Logged
) -> None:
    raw = scan(int(3.5 * MIB), seed=18)
    config = large_config(tmp_path, emulator, save_to_sent_items=False)
    async with run_gateway(config) as gateway:
        assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], raw) == {}
        await gateway.delivered(1, timeout=60)
    [delivered] = emulator.delivered()
    assert delivered.mode == "draft"
    [kept] = logged("sent_items_kept")
    assert "draft" in kept["reason"]


async def test_a_client_that_keeps_no_copy_over_smtp_oauth_is_told_why_it_is_kept(
    tmp_path: Path, logged: Logged
) -> None:
    settings = EmulatorSettings(
        state_dir=tmp_path / "exchange",
        smtp_port=0,
        users=(EmulatorUser("scanner@contoso.com", "contoso-tenant"),),
    )
    clients = [
        {
            "name": "scanners",
            "networks": ["127.0.0.1"],
            "senders": ["*@contoso.com"],
            "save_to_sent_items": False,
        }
    ]
    async with running_emulator(settings) as exchange:
        host, port = exchange.smtp_address
        document = config_document(tmp_path, exchange, clients=clients)
        document["tenants"][0].update(transport="smtp-oauth", smtp_endpoint=f"{host}:{port}")
        async with run_gateway(load_config(write_config(tmp_path, document))) as gateway:
            assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE) == {}
            await gateway.delivered(1)
        [delivered] = exchange.delivered()
    assert delivered.mode == "smtp"
    [kept] = logged("sent_items_kept")
    assert "SMTP submission" in kept["reason"]
