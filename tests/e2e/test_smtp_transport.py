"""The SMTP OAuth transport end to end: gateway → emulator's smtp.office365.com stand-in with
STARTTLS and XOAUTH2, with app-only and delegated tokens, and its 4xx/5xx answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_config
from gateway.emulator import Emulator, EmulatorSettings, EmulatorUser, Faults, running_emulator
from tests.e2e.test_cli import run_cli
from tests.support.gateway import config_document, run_gateway, write_config

Logged = Callable[[str], list[dict[str, Any]]]
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
    document["tenants"][0].update(
        {"transport": "smtp-oauth", "smtp_endpoint": f"{host}:{port}", **tenant}
    )
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
    # The trace field of a relay (RFC 5321 4.4); two recipients, so none is named in it.
    assert delivered.mime.startswith(b"Received: from ")
    assert b"with ESMTP id " + event.queue_id.encode() + b"; " in delivered.mime
    assert event.status == 250


async def test_delegated_sign_in_delivers_over_smtp(tmp_path: Path, exchange: Emulator) -> None:
    document = smtp_document(
        tmp_path, exchange, auth="delegated", client_id="public-app", account="scanner@contoso.com"
    )
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
    [
        ("451 4.3.0 Temporary server error. Please try again later", "deferred"),
        ("554 5.6.0 Corrupt message content", "held"),
    ],
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


async def test_too_many_recipients_are_sent_at_once_in_another_transaction(
    tmp_path: Path, exchange: Emulator
) -> None:
    # Exchange Online takes 500 recipients per message and answers the rest "452 4.5.3".
    document = smtp_document(tmp_path, exchange)  # retries an hour apart: this must not wait
    document["smtp"]["max_recipients"] = 600
    envelope = [f"user{index:03d}@fabrikam.com" for index in range(503)]
    async with run_gateway(load_config(write_config(tmp_path, document))) as gateway:
        assert await gateway.send("scanner@contoso.com", envelope, MESSAGE) == {}
        first, rest = await gateway.delivered(2)
    assert first.queue_id != rest.queue_id
    transactions = [mail.envelope.rcpt_to for mail in exchange.delivered() if mail.envelope]
    assert [len(rcpt_to) for rcpt_to in transactions] == [500, 3]
    assert sorted(transactions[0] + transactions[1]) == envelope  # each once, none lost
    assert list((tmp_path / "spool" / "queue").iterdir()) == []


async def test_deferred_recipients_are_retried_and_refused_ones_bounced(
    tmp_path: Path, exchange: Emulator, logged: Logged
) -> None:
    exchange.set_faults(
        Faults(
            smtp_recipient_replies={
                "carol@fabrikam.com": "450 4.2.1 Mailbox busy, try again later",
                "dave@fabrikam.com": "550 5.1.1 User unknown",
            }
        )
    )
    document = smtp_document(tmp_path, exchange)
    document["delivery"].update(
        retry_initial="1s", retry_max="2s", postmaster="scanner@contoso.com"
    )
    envelope = ["alice@fabrikam.com", "carol@fabrikam.com", "dave@fabrikam.com"]
    async with run_gateway(load_config(write_config(tmp_path, document))) as gateway:
        assert await gateway.send("scanner@contoso.com", envelope, MESSAGE) == {}
        original = await gateway.next_event()
        assert original.result == "delivered"
        [copy] = [
            path.stem
            for path in (tmp_path / "spool" / "queue").glob("*.msg")
            if b'"rcpt_tos":["carol@fabrikam.com"]' in path.read_bytes()
        ]
        shown = await asyncio.to_thread(
            run_cli, "queue", "--config", str(tmp_path / "gateway.yaml"), "show", copy
        )
        assert shown.returncode == 0, shown.stderr
        assert "carol@fabrikam.com" in shown.stdout
        assert "450 4.2.1" in shown.stdout  # the original's attempt is in the copy's history
        [deferred] = logged("recipients_deferred")
        assert (deferred["queue_id"], deferred["new_queue_id"]) == (original.queue_id, copy)
        assert deferred["recipients"] == ["carol@fabrikam.com"]
        assert deferred["replies"] == ["450 4.2.1 Mailbox busy, try again later"]
        [refused] = logged("recipients_refused")
        assert refused["refused"] == ["dave@fabrikam.com"]
        assert "sender is notified" in refused["action"]
        assert "alice@fabrikam.com" not in shown.stdout and "dave" not in shown.stdout
        exchange.set_faults(Faults())  # carol's mailbox is free again
        await gateway.next_event(
            30, lambda event: event.queue_id == copy and event.result == "delivered"
        )
    by_recipients = {mail.envelope.rcpt_to: mail for mail in exchange.delivered() if mail.envelope}
    assert set(by_recipients) == {
        ("alice@fabrikam.com",),
        ("carol@fabrikam.com",),
        ("scanner@contoso.com",),
    }
    notice = by_recipients[("scanner@contoso.com",)].mime
    assert b"Final-Recipient: rfc822; dave@fabrikam.com" in notice
    assert b"Status: 5.1.1" in notice
    assert b"carol@fabrikam.com" not in notice.split(b"message/rfc822")[0]


async def test_deferred_recipients_that_cannot_be_queued_keep_the_whole_message(
    tmp_path: Path, exchange: Emulator, logged: Logged
) -> None:
    exchange.set_faults(Faults(smtp_fail_count=1, smtp_fail_at="data"))  # a first try fails
    document = smtp_document(tmp_path, exchange)
    document["delivery"].update(retry_initial="1s", retry_max="1s")
    tmp = tmp_path / "spool" / "tmp"
    async with run_gateway(load_config(write_config(tmp_path, document))) as gateway:
        assert (
            await gateway.send(
                "scanner@contoso.com", ["alice@fabrikam.com", "carol@fabrikam.com"], MESSAGE
            )
            == {}
        )
        first = await gateway.next_event()
        assert first.result == "deferred"
        tmp.rmdir()
        tmp.write_text("the disk is broken")  # no new spool file can be written now
        exchange.set_faults(Faults(smtp_recipient_replies={"carol@fabrikam.com": "452 4.2.2 Full"}))
        second = await gateway.next_event(30)
        assert (second.queue_id, second.result) == (first.queue_id, "deferred")
        [failed] = logged("recipients_requeue_failed")
        assert failed["recipients"] == ["carol@fabrikam.com"]
        assert "receive it twice" in failed["action"]
        tmp.unlink()
        tmp.mkdir()
        exchange.set_faults(Faults())
        third = await gateway.next_event(30)
        assert (third.queue_id, third.result) == (first.queue_id, "delivered")
    transactions = [mail.envelope.rcpt_to for mail in exchange.delivered() if mail.envelope]
    # alice's copy went twice (logged as such); carol's was never given up.
    assert transactions == [("alice@fabrikam.com",), ("alice@fabrikam.com", "carol@fabrikam.com")]


async def test_deferred_recipients_past_the_queue_lifetime_are_bounced_as_expired(
    tmp_path: Path, exchange: Emulator
) -> None:
    exchange.set_faults(Faults(smtp_recipient_replies={"carol@fabrikam.com": "450 4.2.1 Busy"}))
    document = smtp_document(tmp_path, exchange)  # the next try would be an hour away …
    document["delivery"].update(
        max_queue_lifetime="10m",  # … past the queue lifetime
        postmaster="scanner@contoso.com",
    )
    async with run_gateway(load_config(write_config(tmp_path, document))) as gateway:
        assert (
            await gateway.send(
                "scanner@contoso.com", ["alice@fabrikam.com", "carol@fabrikam.com"], MESSAGE
            )
            == {}
        )
        await gateway.delivered(2)  # alice's message, then the notice about carol
    transactions = [mail.envelope.rcpt_to for mail in exchange.delivered() if mail.envelope]
    assert transactions == [("alice@fabrikam.com",), ("scanner@contoso.com",)]
    notice = exchange.delivered()[1].mime
    assert b"Final-Recipient: rfc822; carol@fabrikam.com" in notice
    assert b"Status: 4.4.7" in notice
    assert list((tmp_path / "spool" / "queue").glob("*.msg")) == []  # no copy waits
