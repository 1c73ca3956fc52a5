"""The Received header (RFC 5321 4.4): what the recipient's "show original" gives for a message
that came through the gateway — the client's HELO and address, this gateway, how it was sent
(TLS, AUTH), the queue ID the client was told and the time — kept through the queue (both
backends) and added at delivery without breaking an S/MIME signature."""

from __future__ import annotations

import asyncio
import re
import smtplib
import ssl
from pathlib import Path

import pytest
import trustme

from gateway.config import load_config
from gateway.emulator import Emulator
from gateway.passwords import hash_password
from tests.e2e.test_pipeline import MESSAGE
from tests.support.corpus import CORPUS, smime_verify
from tests.support.gateway import config_document, run_gateway, write_config

DATE = r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (\w{3}) \d{4} \d\d:\d\d:\d\d \+0000"


def received(mime: bytes) -> tuple[bytes, bytes]:
    """The first Received field (unfolded lines kept) and the rest of the message."""
    match = re.match(rb"Received: [^\r]*(?:\r\n\t[^\r]*)*\r\n", mime)
    assert match, mime[:200]
    return match[0], mime[match.end() :]


@pytest.mark.usefixtures("queue_backend")
async def test_starttls_and_auth_with_one_recipient(tmp_path: Path, emulator: Emulator) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "tls.crt"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "tls.key"))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    document = config_document(
        tmp_path,
        emulator,
        smtp={
            "hostname": "relay.contoso.com",
            "tls": {"cert_file": str(tmp_path / "tls.crt"), "key_file": str(tmp_path / "tls.key")},
            "listeners": [
                {
                    "name": "lan",
                    "address": "127.0.0.1",
                    "port": 0,
                    "tls": "starttls",
                    "auth": "optional",
                }
            ],
        },
        clients=[{"name": "nobody", "networks": ["192.0.2.0/24"], "senders": []}],
        users=[
            {
                "username": "mfp",
                "password_hash": hash_password("Printer-Pa55"),
                "senders": ["scanner@contoso.com"],
            }
        ],
    )
    async with run_gateway(load_config(write_config(tmp_path, document))) as gateway:

        def send() -> str:
            with smtplib.SMTP(*gateway.smtp_address, timeout=10) as client:
                client.ehlo("mfp-3rd-floor.local")
                client.starttls(context=context)
                client.ehlo("mfp-3rd-floor.local")
                client.login("mfp", "Printer-Pa55")
                client.mail("scanner@contoso.com")
                client.rcpt("alice@contoso.com")
                code, text = client.data(MESSAGE)
                assert code == 250, text
                return text.decode().split()[-1]

        queue_id = await asyncio.to_thread(send)
        await gateway.delivered(1)
    [delivered] = emulator.delivered()
    field, rest = received(delivered.mime)
    assert re.fullmatch(
        rb"Received: from mfp-3rd-floor\.local \(\[127\.0\.0\.1\]\)\r\n"
        rb"\tby relay\.contoso\.com with ESMTPSA id " + queue_id.encode() + rb"\r\n"
        rb"\tfor <alice@contoso\.com>; " + DATE.encode() + rb"\r\n",
        field,
    ), field
    body = MESSAGE.split(b"\r\n\r\n", 1)[1]
    assert rest.split(b"\r\n\r\n", 1)[1] == body and b"\nReceived:" not in rest


async def test_helo_and_several_recipients(tmp_path: Path, emulator: Emulator) -> None:
    """A plain HELO client: `with SMTP`; with several recipients none is named (each would
    learn the others, Bcc included)."""
    document = config_document(tmp_path, emulator)
    document["smtp"]["hostname"] = "relay.contoso.com"
    async with run_gateway(load_config(write_config(tmp_path, document))) as gateway:

        def send() -> None:
            with smtplib.SMTP(*gateway.smtp_address, timeout=10) as client:
                client.helo("old-printer")
                client.sendmail(
                    "scanner@contoso.com", ["alice@contoso.com", "bob@contoso.com"], MESSAGE
                )

        await asyncio.to_thread(send)
        await gateway.delivered(1)
    [delivered] = emulator.delivered()
    field, _rest = received(delivered.mime)
    assert field.startswith(
        b"Received: from old-printer ([127.0.0.1])\r\n\tby relay.contoso.com with SMTP id "
    )
    assert b"for <" not in field


async def test_a_signed_message_still_verifies_with_the_header_added(
    tmp_path: Path, emulator: Emulator
) -> None:
    signed = (CORPUS / "app-smime-signed.eml").read_bytes().replace(b"\r\n", b"\n")
    signed = signed.replace(b"\n", b"\r\n")
    assert smime_verify(signed) is None
    document = config_document(tmp_path, emulator)
    document["tenants"][0]["mode"] = "json"  # signed mail goes as MIME whatever the mode
    async with run_gateway(load_config(write_config(tmp_path, document))) as gateway:
        assert await gateway.send("payroll@contoso.com", ["hr@contoso.com"], signed) == {}
        await gateway.delivered(1)
    [delivered] = emulator.delivered()
    field, rest = received(delivered.mime)
    assert field.startswith(b"Received: from ") and b"for <hr@contoso.com>" in field
    assert rest == signed  # the message itself byte for byte
    assert smime_verify(delivered.mime) is None
    # The check can fail: one changed byte of the signed text does.
    assert smime_verify(delivered.mime.replace(b"March 2024 is", b"March 2025 is")) is not None
