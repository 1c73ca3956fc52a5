"""JSON mode and the large-message path, end to end: smtplib → gateway → emulator over HTTPS."""

from __future__ import annotations

import hashlib
import random
import smtplib
from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

import pytest

from gateway.config import MIME_SUBMISSION_LIMIT, load_config
from gateway.emulator import Emulator, EmulatorSettings, Faults, running_emulator
from gateway.emulator.settings import EmulatorApp
from tests.support.gateway import config_document, run_gateway, write_config

MIB = 1024 * 1024


def scan(size: int, *, seed: int = 1, subject: str = "Scan", name: str = "scan.pdf") -> bytes:
    """A scan-to-email message of about `size` bytes: a short text and one PDF attachment."""
    message = EmailMessage(policy=SMTP)
    message["From"] = "MFP 3F <scanner@contoso.com>"
    message["To"] = "Alice <alice@contoso.com>"
    message["Subject"] = subject
    message["Message-ID"] = f"<{subject.replace(' ', '-')}-{seed}@mfp.contoso.com>"
    message.set_content("Scanned document attached.\n")
    payload = b"%PDF-1.7\n" + random.Random(seed).randbytes(max(size * 3 // 4 - 2048, 0))
    message.add_attachment(payload, maintype="application", subtype="pdf", filename=name)
    return message.as_bytes()


def payload_of(raw: bytes) -> bytes:
    parsed = message_from_bytes(raw, policy=policy.default)
    [attachment] = list(parsed.iter_attachments())  # type: ignore[attr-defined]
    content = attachment.get_payload(decode=True)
    assert isinstance(content, bytes)
    return content


def large_config(tmp_path: Path, emulator: Emulator, **tenant: Any) -> Any:
    document = config_document(tmp_path, emulator)
    document["smtp"]["max_message_size"] = "60MiB"
    document["tenants"][0].update({"large_messages": True, "max_message_size": "60MiB", **tenant})
    return load_config(write_config(tmp_path, document))


@pytest.fixture
async def small_graph(tmp_path: Path) -> AsyncIterator[Emulator]:
    """An emulator whose mailboxes take at most 10 MiB (ErrorMessageSizeExceeded above)."""
    settings = EmulatorSettings(state_dir=tmp_path / "small", max_message_size=10 * MIB)
    async with running_emulator(settings) as running:
        yield running


@pytest.fixture
async def send_only_app(tmp_path: Path) -> AsyncIterator[Emulator]:
    """An emulator where the app has Mail.Send but no Mail.ReadWrite (admin consent)."""
    app = EmulatorApp("contoso-tenant", "contoso-app", "contoso-secret", roles=("Mail.Send",))
    settings = EmulatorSettings(state_dir=tmp_path / "sendonly", apps=(app,))
    async with running_emulator(settings) as running:
        yield running


async def test_json_mode_converts_html_inline_images_attachments_and_threading(
    tmp_path: Path, emulator: Emulator
) -> None:
    message = EmailMessage(policy=SMTP)
    message["From"] = "=?iso-8859-1?q?J=F6rg_M=FCller?= <erp@contoso.com>"
    message["To"] = "Alice <alice@contoso.com>, list@contoso.com"
    message["Cc"] = '"Ops, Night" <ops@fabrikam.com>'
    message["Subject"] = "=?utf-8?b?UmVjaG51bmcgZsO8ciBNw6RyeiDinJM=?="
    message["Message-ID"] = "<inv-2026-11@erp.contoso.com>"
    message["In-Reply-To"] = "<order-77@erp.contoso.com>"
    message["X-Priority"] = "1 (Highest)"
    message["X-ERP-Document"] = "INV-2026-11"
    message.set_content("Invoice attached.\n")
    message.add_alternative('<p>Invoice <img src="cid:logo@erp"></p>\n', subtype="html")
    message.get_payload()[1].add_related(  # type: ignore[index]
        b"\x89PNG\r\n\x1a\nlogo", maintype="image", subtype="png", cid="<logo@erp>"
    )
    message.add_attachment(
        b"%PDF-1.4 invoice", maintype="application", subtype="pdf", filename="Rechnung März.pdf"
    )
    message.add_attachment(b"", maintype="text", subtype="plain", filename="empty.txt")
    envelope = ["alice@contoso.com", "ops@fabrikam.com", "audit@contoso.com"]
    document = config_document(tmp_path, emulator)
    document["tenants"][0]["mode"] = "json"
    async with run_gateway(load_config(write_config(tmp_path, document))) as gateway:
        assert await gateway.send("erp@contoso.com", envelope, message.as_bytes()) == {}
        await gateway.delivered(1)
    [delivered] = emulator.delivered()
    assert delivered.mode == "json"
    sent = delivered.message_json
    assert sent is not None
    assert sent["subject"] == "Rechnung für März ✓"
    assert sent["from"]["emailAddress"] == {"address": "erp@contoso.com", "name": "Jörg Müller"}
    assert delivered.recipients == {
        "to": ["alice@contoso.com"],
        "cc": ["ops@fabrikam.com"],
        "bcc": ["audit@contoso.com"],
    }  # list@ is in the header but not in the envelope: not sent to
    assert sent["body"]["contentType"] == "html"
    assert 'src="cid:logo@erp"' in sent["body"]["content"]
    assert sent["importance"] == "high"
    assert sent["internetMessageId"] == "<inv-2026-11@erp.contoso.com>"
    assert {"id": "String 0x1042", "value": "<order-77@erp.contoso.com>"} in sent[
        "singleValueExtendedProperties"
    ]
    assert sent["internetMessageHeaders"] == [{"name": "X-ERP-Document", "value": "INV-2026-11"}]
    found = {a.name: a for a in delivered.attachments}
    assert found["Rechnung März.pdf"].content == b"%PDF-1.4 invoice"
    assert found["Rechnung März.pdf"].is_inline is False
    assert found["empty.txt"].content == b""
    [logo] = [a for a in delivered.attachments if a.content_id == "logo@erp"]
    assert logo.is_inline and logo.content == b"\x89PNG\r\n\x1a\nlogo"
    assert len(delivered.attachments) == 3


async def test_signed_mail_goes_as_mime_even_in_json_mode(
    tmp_path: Path, emulator: Emulator
) -> None:
    signed = (
        b"From: scanner@contoso.com\r\nTo: alice@contoso.com\r\nSubject: signed\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
        b'micalg=sha-256; boundary="sig"\r\n\r\n'
        b"--sig\r\nContent-Type: text/plain\r\n\r\nsigned text\r\n"
        b"--sig\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nMIIBsignature\r\n--sig--\r\n"
    )
    document = config_document(tmp_path, emulator)
    document["tenants"][0]["mode"] = "json"
    async with run_gateway(load_config(write_config(tmp_path, document))) as gateway:
        await gateway.send("scanner@contoso.com", ["alice@contoso.com"], signed)
        await gateway.delivered(1)
    [delivered] = emulator.delivered()
    assert delivered.mode == "mime"
    # Byte for byte after the gateway's Received field: the signature still verifies.
    assert delivered.mime.startswith(b"Received: from ")
    assert delivered.mime.endswith(b"\r\n" + signed)


@pytest.mark.parametrize(
    "size", [int(3.5 * MIB), 12 * MIB, 40 * MIB], ids=["3.5MB", "12MB", "40MB"]
)
async def test_large_messages_go_through_upload_sessions(
    tmp_path: Path, emulator: Emulator, size: int
) -> None:
    raw = scan(size, seed=size)
    async with run_gateway(large_config(tmp_path, emulator)) as gateway:
        assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], raw) == {}
        event = await gateway.next_event(120)
        assert event.result == "delivered", event
    [delivered] = emulator.delivered()
    assert delivered.mode == "draft"
    assert delivered.recipients["to"] == ["alice@contoso.com"]
    [attachment] = delivered.attachments
    assert attachment.name == "scan.pdf" and attachment.content_type == "application/pdf"
    assert hashlib.sha256(attachment.content).digest() == hashlib.sha256(payload_of(raw)).digest()
    assert emulator.state.store.drafts == {}  # the draft became the sent message


async def test_a_failed_chunk_is_resumed_where_graph_expects_it(
    tmp_path: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = scan(12 * MIB, seed=7)
    emulator.set_faults(Faults(upload_fail_chunks=2))
    async with run_gateway(large_config(tmp_path, emulator)) as gateway:
        await gateway.send("scanner@contoso.com", ["alice@contoso.com"], raw)
        [event] = await gateway.delivered(1, timeout=60)
    [delivered] = emulator.delivered()
    assert delivered.attachments[0].content == payload_of(raw)
    assert event.result == "delivered"


async def test_a_message_over_the_mailbox_limit_is_held_and_its_draft_deleted(
    tmp_path: Path, small_graph: Emulator
) -> None:
    raw = scan(12 * MIB, seed=3)
    async with run_gateway(large_config(tmp_path, small_graph)) as gateway:
        await gateway.send("scanner@contoso.com", ["alice@contoso.com"], raw)
        event = await gateway.next_event(60, lambda e: e.result != "deferred")
    assert event.result == "held"
    assert event.code == "ErrorMessageSizeExceeded"
    assert small_graph.delivered() == []
    assert small_graph.state.store.drafts == {}  # no orphaned draft left in the mailbox


async def test_without_mail_readwrite_the_large_path_defers_and_says_what_to_grant(
    tmp_path: Path, send_only_app: Emulator
) -> None:
    raw = scan(int(3.5 * MIB), seed=4)
    async with run_gateway(large_config(tmp_path, send_only_app)) as gateway:
        await gateway.send("scanner@contoso.com", ["alice@contoso.com"], raw)
        event = await gateway.next_event(30)
    assert event.result == "deferred"  # a configuration problem: retried, never bounced
    assert "Mail.ReadWrite" in event.reason


async def test_graph_413_on_mime_falls_back_to_the_large_path(tmp_path: Path) -> None:
    # A Graph whose request limit is 4,000,000 bytes rather than 4 MiB: a message just under
    # the MIME limit is refused with 413, and goes again as draft + attachments.
    settings = EmulatorSettings(state_dir=tmp_path / "strict", max_request_size=4_000_000)
    async with running_emulator(settings) as emulator:
        message = EmailMessage(policy=SMTP)
        message["From"] = "scanner@contoso.com"
        message["To"] = "alice@contoso.com"
        message["Subject"] = "two pages"
        message.set_content("Two scans.\n")
        pages = [random.Random(n).randbytes(1_120_000) for n in (1, 2)]
        for number, page in enumerate(pages, 1):
            message.add_attachment(
                page, maintype="image", subtype="tiff", filename=f"page{number}.tif"
            )
        raw = message.as_bytes()
        assert 4_000_000 * 3 // 4 < len(raw) <= MIME_SUBMISSION_LIMIT
        async with run_gateway(large_config(tmp_path, emulator)) as gateway:
            await gateway.send("scanner@contoso.com", ["alice@contoso.com"], raw)
            await gateway.delivered(1)
        [delivered] = emulator.delivered()
    assert delivered.mode == "draft"
    assert [a.content for a in delivered.attachments] == pages


async def test_size_limits_follow_the_senders_route(tmp_path: Path, emulator: Emulator) -> None:
    document = config_document(tmp_path, emulator)
    document["smtp"]["max_message_size"] = "60MiB"
    document["tenants"][0].update({"large_messages": True, "max_message_size": "40MiB"})
    document["routing"] = {"addresses": {"printer@contoso.com": {"mode": "mime"}}}
    async with run_gateway(load_config(write_config(tmp_path, document))) as gateway:

        def dialogue(client: smtplib.SMTP) -> list[tuple[int, bytes]]:
            client.ehlo("printer.local")
            size = int(client.esmtp_features["size"])
            replies = [(size, b"")]
            replies.append(client.mail("printer@contoso.com", [f"SIZE={5 * MIB}"]))
            client.rset()
            replies.append(client.mail("scanner@contoso.com", [f"SIZE={5 * MIB}"]))
            client.rset()
            replies.append(client.mail("scanner@contoso.com", [f"SIZE={41 * MIB}"]))
            client.rset()
            client.mail("printer@contoso.com")
            client.rcpt("alice@contoso.com")
            replies.append(client.data(scan(int(3.2 * MIB))))
            return replies

        advertised, mime_only, large_ok, too_large, data = await gateway.session(dialogue)
    assert advertised[0] == 40 * MIB  # what the most capable route delivers
    assert mime_only[0] == 552 and b"limit 2.9 MiB" in mime_only[1]
    assert large_ok[0] == 250
    assert too_large[0] == 552  # over what any route delivers: the advertised SIZE
    assert data[0] == 552  # declared nothing, sent too much for a MIME-only route


async def test_json_refused_for_its_headers_goes_again_without_them(
    tmp_path: Path, emulator: Emulator
) -> None:
    message = (
        b"From: erp@contoso.com\r\nTo: alice@contoso.com\r\nSubject: order 77\r\n"
        b"X-ERP-Document: ORD-77\r\n\r\nOrder confirmed.\r\n"
    )
    emulator.set_faults(Faults(header_refusals=1))
    document = config_document(tmp_path, emulator)
    document["tenants"][0]["mode"] = "json"
    async with run_gateway(load_config(write_config(tmp_path, document))) as gateway:
        await gateway.send("erp@contoso.com", ["alice@contoso.com"], message)
        [event] = await gateway.delivered(1)
    [delivered] = emulator.delivered()
    assert delivered.message_json is not None
    assert "internetMessageHeaders" not in delivered.message_json
    assert delivered.message_json["subject"] == "order 77"
    assert event.result == "delivered"
