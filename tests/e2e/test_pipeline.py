"""One message end to end: smtplib → gateway → Graph emulator over HTTPS with real msal."""

from __future__ import annotations

import asyncio
import os
import re
import smtplib
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.emulator import Emulator, Faults
from gateway.spool import Spool
from gateway.spool.writing import RecordWriter
from tests.e2e.test_conversion import scan
from tests.support.gateway import config_document, make_config, run_gateway, write_config
from tests.support.process import SmtpDialogue

MESSAGE = (
    b"From: Scanner <scanner@contoso.com>\r\n"
    b"To: Alice <alice@contoso.com>\r\n"
    b"Cc: bob@fabrikam.com\r\n"
    b"Subject: Scan from MFP-3F\r\n"
    b"Message-ID: <scan-0001@mfp.contoso.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Your scan is attached.\r\n"
    b".A line that starts with a dot\r\n"
    b"\xc3\xa9t\xc3\xa9 8-bit body\r\n"
)
ENVELOPE = ["alice@contoso.com", "bob@fabrikam.com", "carol@contoso.com"]


@pytest.fixture(autouse=True)
def _system_ca_bundle_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # As on these machines: requests would let these override verify= and ignore ca_file.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")


@pytest.mark.usefixtures("queue_backend")
async def test_message_is_delivered_byte_identical_with_envelope_bcc(
    tmp_path: Path, emulator: Emulator
) -> None:
    async with run_gateway(make_config(tmp_path, emulator)) as gateway:
        refused = await gateway.send("scanner@contoso.com", ENVELOPE, MESSAGE)
        assert refused == {}
        await gateway.delivered(1)
    [delivered] = emulator.delivered()
    assert delivered.mode == "mime"
    assert delivered.mailbox == "scanner@contoso.com"
    # After the gateway's Received field (see test_trace), the message byte for byte.
    trace = re.match(rb"Received: from [^\r]*(?:\r\n\t[^\r]*)*\r\n", delivered.mime)
    assert trace is not None
    assert delivered.mime[trace.end() :] == b"Bcc: carol@contoso.com\r\n" + MESSAGE
    addressed = [a.lower() for field in ("to", "cc", "bcc") for a in delivered.recipients[field]]
    assert sorted(addressed) == sorted(ENVELOPE)  # each envelope recipient exactly once
    assert delivered.tenant_id == "contoso-tenant"
    assert delivered.client_id == "contoso-app"
    assert os.environ["REQUESTS_CA_BUNDLE"] == "/etc/ssl/certs/ca-certificates.crt"


def transaction(client: smtplib.SMTP) -> tuple[int, bytes]:
    client.ehlo("printer.local")
    client.mail("scanner@contoso.com")
    client.rcpt("alice@contoso.com")
    return client.data(MESSAGE)


async def test_queue_id_in_250_is_the_delivered_message(
    tmp_path: Path, emulator: Emulator, queue_backend: str
) -> None:
    async with run_gateway(make_config(tmp_path, emulator)) as gateway:
        code, text = await gateway.session(transaction)
        assert code == 250
        assert text.startswith(b"2.0.0 queued as ")
        queue_id = text.split()[-1].decode()
        [event] = await gateway.delivered(1)
        assert event.queue_id == queue_id
        if queue_backend == "postgresql":  # its row goes in the same transaction
            assert await gateway.gateway.queue.entries() == []
    if queue_backend == "files":  # the file goes on the remover thread, which close waits for
        assert Spool(tmp_path / "spool").directory.joinpath("queue").exists()
        assert list((tmp_path / "spool" / "queue").iterdir()) == []


async def test_several_messages_on_one_connection_are_separate_and_share_a_token(
    tmp_path: Path, emulator: Emulator
) -> None:
    async with run_gateway(make_config(tmp_path, emulator)) as gateway:

        def five_messages(client: smtplib.SMTP) -> None:
            for index in range(5):
                body = MESSAGE.replace(b"scan-0001", f"scan-{index:04d}".encode())
                client.sendmail("scanner@contoso.com", ["alice@contoso.com"], body)

        await gateway.session(five_messages)
        events = await gateway.delivered(5)
    assert len({event.queue_id for event in events}) == 5
    ids = sorted(m.mime.split(b"Message-ID: <")[1].split(b"@")[0] for m in emulator.delivered())
    assert ids == [f"scan-{i:04d}".encode() for i in range(5)]
    assert emulator.stats.token_requests == 1


async def test_unknown_sender_domain_is_refused_at_mail_from(
    tmp_path: Path, emulator: Emulator
) -> None:
    async with run_gateway(make_config(tmp_path, emulator)) as gateway:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            await gateway.send("someone@unknown.example", ["alice@contoso.com"], MESSAGE)
    assert refused.value.smtp_code == 550
    assert refused.value.smtp_error.startswith(b"5.7.1")
    assert emulator.delivered() == []


async def test_host_outside_client_networks_is_refused_at_connect(
    tmp_path: Path, emulator: Emulator
) -> None:
    clients = [{"name": "printers", "networks": ["192.0.2.0/24"], "senders": ["*"]}]
    async with run_gateway(make_config(tmp_path, emulator, clients=clients)) as gateway:
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            await gateway.session(lambda client: None)
    assert refused.value.smtp_code == 554
    assert refused.value.smtp_error.startswith(b"5.7.1")


async def test_sender_not_allowed_for_client(tmp_path: Path, emulator: Emulator) -> None:
    clients = [{"name": "printers", "networks": ["127.0.0.1"], "senders": ["scanner@contoso.com"]}]
    async with run_gateway(make_config(tmp_path, emulator, clients=clients)) as gateway:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            await gateway.send("ceo@contoso.com", ["alice@contoso.com"], MESSAGE)
        assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE) == {}
        await gateway.delivered(1)
    assert (refused.value.smtp_code, refused.value.smtp_error[:5]) == (550, b"5.7.1")


@pytest.mark.usefixtures("queue_backend")
async def test_graph_outage_defers_then_delivers(tmp_path: Path, emulator: Emulator) -> None:
    emulator.set_faults(Faults(unavailable_count=2))
    async with run_gateway(make_config(tmp_path, emulator)) as gateway:
        assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE) == {}
        first = await gateway.next_event()
        assert (first.result, first.status) == ("deferred", 503)
        await gateway.delivered(1)
    assert len(emulator.delivered()) == 1


@pytest.mark.usefixtures("queue_backend")
async def test_permanent_graph_error_holds_the_message_with_its_reason(
    tmp_path: Path, emulator: Emulator
) -> None:
    emulator.set_faults(
        Faults(mailbox_errors={"scanner@contoso.com": "MailboxNotEnabledForRESTAPI"})
    )
    async with run_gateway(make_config(tmp_path, emulator)) as gateway:
        assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE) == {}
        event = await gateway.next_event()
        info = await gateway.gateway.queue.show(event.queue_id)
    assert (event.result, event.code) == ("held", "MailboxNotEnabledForRESTAPI")
    assert info is not None and info["state"] == "hold"
    assert "Exchange Online licence" in info["hold"]["reason"]


async def test_unwritable_spool_answers_452_and_accepts_nothing(
    tmp_path: Path, emulator: Emulator
) -> None:
    async with run_gateway(make_config(tmp_path, emulator)) as gateway:
        tmp_dir = tmp_path / "spool" / "tmp"
        tmp_dir.rmdir()
        tmp_dir.write_text("in the way")  # even root cannot create files under a regular file
        code, text = await gateway.session(transaction)
    assert (code, text) == (452, b"4.3.1 Insufficient system storage, try again later")
    assert emulator.delivered() == []


async def test_unexpected_error_answers_451_without_details(
    tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object, **_kwargs: object) -> str:
        raise RuntimeError("internal detail /var/secret/path")

    async with run_gateway(make_config(tmp_path, emulator)) as gateway:
        monkeypatch.setattr(RecordWriter, "commit", broken)
        code, text = await gateway.session(transaction)
    assert (code, text) == (451, b"4.3.0 Temporary local problem, try again later")


async def test_the_spool_file_grows_while_data_is_still_arriving(
    tmp_path: Path, emulator: Emulator
) -> None:
    """DATA goes to the spool as it arrives: a 6 MiB scan is mostly on disk before its end
    marker is sent, so receiving it never needs the whole message in memory."""
    document = config_document(tmp_path, emulator)
    document["smtp"]["max_message_size"] = "20MiB"
    document["tenants"][0].update({"large_messages": True, "max_message_size": "20MiB"})
    config = load_config(write_config(tmp_path, document))
    message = scan(6 * 1024 * 1024)  # a PDF attachment, base64
    async with run_gateway(config) as gateway:
        smtp = await SmtpDialogue.open(*gateway.smtp_address)
        for command in (
            "EHLO scanner",
            "MAIL FROM:<scanner@contoso.com>",
            "RCPT TO:<alice@contoso.com>",
            "DATA",
        ):
            await smtp.command(command)
        await smtp.send_raw(message.replace(b"\r\n.", b"\r\n.."))
        tmp = config.spool.directory / "tmp"
        async with asyncio.timeout(20):  # the gateway reads what was sent and writes it out
            while not any(p.stat().st_size > 4 * 1024 * 1024 for p in tmp.glob("*.msg")):
                await asyncio.sleep(0.05)
        assert list((config.spool.directory / "queue").glob("*.msg")) == []  # not yet queued
        await smtp.send_raw(b".\r\n")
        reply = await smtp.reply()
        await smtp.close()
        assert reply.startswith("250 2.0.0 queued as"), reply
        event = await gateway.next_event(timeout=60)
        assert event.result == "delivered", event
    assert list(tmp.glob("*")) == []
