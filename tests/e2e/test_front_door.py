"""SMTP front door: header From/Sender checks, size limits with enhanced codes, connection caps."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import smtplib
import ssl
import struct
import warnings
from pathlib import Path

import pytest
import trustme

from gateway.config import MIME_SUBMISSION_LIMIT, load_config
from gateway.emulator import Emulator
from tests.conftest import Logged
from tests.e2e.test_pipeline import MESSAGE
from tests.support.gateway import config_document, make_config, run_gateway, write_config
from tests.support.process import SmtpDialogue

PRINTERS = [{"name": "printers", "networks": ["127.0.0.1"], "senders": ["scanner@contoso.com"]}]


def with_from(value: str) -> bytes:
    return MESSAGE.replace(b"From: Scanner <scanner@contoso.com>", b"From: " + value.encode())


# (From value, the reply's code and enhanced status; 250 = accepted)
FROM_FORMS = [
    ("Scanner <scanner@contoso.com>", "250"),
    ("=?utf-8?q?Sc=C3=A4nner?= <SCANNER@Contoso.com>", "250"),
    # Multifunction printers that repeat the address as the display name, in every spelling.
    ("scanner@contoso.com <scanner@contoso.com>", "250"),
    ('"scanner@contoso.com" <scanner@contoso.com>', "250"),
    ("SCANNER@CONTOSO.COM <scanner@contoso.com>", "250"),
    ("scanner@contoso.com\r\n <scanner@contoso.com>", "250"),  # folded
    ("=?utf-8?q?scanner=40contoso=2Ecom?= <scanner@contoso.com>", "250"),
    ("scanner@contoso.com (scanner@contoso.com)", "250"),
    ('"scanner@floor3" <scanner@contoso.com>', "250"),  # a Brother MFP's name: no address
    # Spoofs: another address where a reader looks first, or another sender outright.
    ("CEO <ceo@contoso.com>", "550 5.7.1"),  # spoofed display
    ("scanner@contoso.com)<ceo@contoso.com>", "550 5.7.1"),  # CVE-2023-27043 shape
    ("alice@example.org)<scanner@contoso.com>", "550 5.7.1"),  # and with the allowed one last
    ("=?utf-8?q?scanner@contoso.com?= <ceo@contoso.com>", "550 5.7.1"),  # address in the name
    ('"scanner@contoso.com" <ceo@contoso.com>', "550 5.7.1"),
    ('"ceo@contoso.com" <scanner@contoso.com>', "550 5.7.1"),
    (
        '"Scanner <scanner@cop%e: x" <scanner@contoso.com>',
        "550 5.7.1",
    ),  # an angle address in a name
    ("ceo@contoso.com <scanner@contoso.com>", "550 5.7.1"),
    ("=?utf-8?q?ceo=40contoso=2Ecom?= <scanner@contoso.com>", "550 5.7.1"),
    ("=?utf-8?b?Y2VvQGNvbnRvc28uY29t?= <scanner@contoso.com>", "550 5.7.1"),
    ("=?utf-8?b?Y2Vv77ygY29udG9zby5jb20=?= <scanner@contoso.com>", "550 5.7.1"),  # full-width @
    ("scanner@contoso.com (ceo@contoso.com)", "550 5.7.1"),  # a comment read as the name
    ('"ceo"@contoso <scanner@contoso.com>', "550 5.7.1"),  # the library reads ceo@contoso
    ("Scanner <scanner@contoso.com>\r\nX-Device: mfp\rFrom: ceo@contoso.com", "554 5.6.0"),
    ("Scanner <scanner@contoso.com>,\r\n CEO <ceo@contoso.com>", "550 5.7.1"),  # folded second
    # Control characters split the value differently in different parsers.
    ("scanner@contoso.com\x0b, ceo@contoso.com", "554 5.6.0"),
    ("scanner@contoso.com\x0c, ceo@contoso.com", "554 5.6.0"),
    ("scanner@contoso.com\x1c, ceo@contoso.com", "554 5.6.0"),
    ("scanner@contoso.com\xc2\x85, ceo@contoso.com", "554 5.6.0"),  # NEL in UTF-8
    ("\x0bscanner@contoso.com", "554 5.6.0"),
    # Unreadable: the parser used to raise on these, so they got 451 and came back forever.
    (".:", "554 5.6.0"),
    ("\\@", "554 5.6.0"),
    ("().\\", "554 5.6.0"),
    (":;l", "554 5.6.0"),
]


@pytest.mark.parametrize(("header", "reply"), FROM_FORMS)
async def test_header_from_must_be_an_allowed_sender(
    tmp_path: Path, emulator: Emulator, header: str, reply: str, logged: Logged
) -> None:
    config = make_config(tmp_path, emulator, clients=PRINTERS)
    async with run_gateway(config) as gateway:

        def send() -> tuple[int, bytes]:
            with smtplib.SMTP(*gateway.smtp_address, timeout=10) as client:
                client.ehlo()
                client.mail("scanner@contoso.com")
                client.rcpt("alice@contoso.com")
                return client.data(with_from(header))

        code, text = await asyncio.to_thread(send)
    assert f"{code} {text.decode()}".startswith(reply), (code, text)
    if code != 250:
        [refused] = logged("refused")
        assert refused["command"] == "DATA" and refused["reply"] == code
        assert "From" in refused["reason"] or "header section" in refused["reason"]


async def test_two_from_headers_are_refused(tmp_path: Path, emulator: Emulator) -> None:
    """Mail clients show one From of two; which one differs, so neither can be trusted."""
    config = make_config(tmp_path, emulator, clients=PRINTERS)
    message = with_from("scanner@contoso.com\r\nFrom: scanner@contoso.com")
    async with run_gateway(config) as gateway:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            await gateway.send("scanner@contoso.com", ["alice@contoso.com"], message)
    assert refused.value.smtp_code == 550


@pytest.mark.parametrize("name", [b"To", b"Cc", b"Reply-To", b"Bcc"])
async def test_control_characters_in_any_address_header_are_refused(
    tmp_path: Path, emulator: Emulator, name: bytes
) -> None:
    """Even for a client the gateway sends as its own mailbox (its From is replaced)."""
    clients = [{**PRINTERS[0], "send_as": "scans@contoso.com"}]
    config = make_config(tmp_path, emulator, clients=clients)
    message = MESSAGE.replace(
        b"Subject:", name + b": alice@contoso.com\x0b, x@evil.test\r\nSubject:"
    )
    async with run_gateway(config) as gateway:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            await gateway.send("scanner@contoso.com", ["alice@contoso.com"], message)
    assert (refused.value.smtp_code, refused.value.smtp_error[:5]) == (554, b"5.6.0")


async def test_sender_header_is_checked_too(tmp_path: Path, emulator: Emulator) -> None:
    config = make_config(tmp_path, emulator, clients=PRINTERS)
    message = MESSAGE.replace(b"Subject:", b"Sender: ceo@contoso.com\r\nSubject:")
    async with run_gateway(config) as gateway:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            await gateway.send("scanner@contoso.com", ["alice@contoso.com"], message)
    assert refused.value.smtp_code == 550


async def test_send_as_clients_may_use_any_header_from(tmp_path: Path, emulator: Emulator) -> None:
    clients = [{**PRINTERS[0], "send_as": "scans@contoso.com"}]
    config = make_config(tmp_path, emulator, clients=clients)
    async with run_gateway(config) as gateway:
        device = with_from("MFP <mfp@printer.local>")
        assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], device) == {}
        await gateway.delivered(1)


async def test_size_is_what_graph_can_take_with_enhanced_codes(
    tmp_path: Path, emulator: Emulator
) -> None:
    async with run_gateway(make_config(tmp_path, emulator)) as gateway:
        smtp = await SmtpDialogue.open(*gateway.smtp_address)
        ehlo = await smtp.command("EHLO device")
        assert f"250-SIZE {MIME_SUBMISSION_LIMIT}" in ehlo
        declared = await smtp.command(
            f"MAIL FROM:<scanner@contoso.com> SIZE={MIME_SUBMISSION_LIMIT + 1}"
        )
        assert declared.startswith("552 5.3.4")
        assert (await smtp.command("MAIL FROM:<scanner@contoso.com>")).startswith("250")
        assert (await smtp.command("RCPT TO:<alice@contoso.com>")).startswith("250")
        assert (await smtp.command("DATA")).startswith("354")
        line = b"x" * 998 + b"\r\n"
        await smtp.send_raw(MESSAGE + line * (MIME_SUBMISSION_LIMIT // len(line) + 10) + b".\r\n")
        assert (await smtp.reply()).startswith("552 5.3.4")
        await smtp.close()
    assert emulator.delivered() == []


async def test_connections_per_address_are_capped(tmp_path: Path, emulator: Emulator) -> None:
    smtp = {
        "listeners": [{"name": "lan", "address": "127.0.0.1", "port": 0}],
        "max_connections_per_ip": 3,
    }
    async with run_gateway(make_config(tmp_path, emulator, smtp=smtp)) as gateway:
        held = [await SmtpDialogue.open(*gateway.smtp_address) for _ in range(3)]
        reader, writer = await asyncio.open_connection(*gateway.smtp_address)
        assert (await reader.readline()).startswith(b"421 4.7.0")
        writer.close()
        for dialogue in held:
            await dialogue.close()
        # Once they are gone, a new connection is welcome again.
        assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE) == {}


async def test_recipients_can_be_limited_per_client(tmp_path: Path, emulator: Emulator) -> None:
    clients = [{**PRINTERS[0], "recipients": ["*@contoso.com"]}]
    async with run_gateway(make_config(tmp_path, emulator, clients=clients)) as gateway:
        refused = await gateway.send(
            "scanner@contoso.com", ["alice@contoso.com", "someone@gmail.example"], MESSAGE
        )
        await gateway.delivered(1)
    assert refused == {
        "someone@gmail.example": (550, b"5.7.1 Recipient not allowed for this client")
    }
    assert emulator.delivered()[0].recipients["bcc"] == []


async def test_smtputf8_is_refused_clearly(tmp_path: Path, emulator: Emulator) -> None:
    async with run_gateway(make_config(tmp_path, emulator)) as gateway:
        smtp = await SmtpDialogue.open(*gateway.smtp_address)
        assert "SMTPUTF8" not in await smtp.command("EHLO device")
        assert (await smtp.command("MAIL FROM:<scanner@contoso.com> SMTPUTF8")).startswith(
            "553 5.6.7"
        )
        await smtp.send_raw("MAIL FROM:<jörg@contoso.com>\r\n".encode())
        assert (await smtp.reply()).startswith("553 5.6.7")
        await smtp.close()


SMUGGLING = [b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\r", b"\r\n.\n", b"\r.\r\n", b"\n.\r"]


@pytest.mark.parametrize("ending", SMUGGLING, ids=[repr(e) for e in SMUGGLING])
async def test_smuggling_never_splits_a_transaction(
    tmp_path: Path, emulator: Emulator, ending: bytes
) -> None:
    """Only CRLF.CRLF ends DATA: a fake end followed by a second transaction stays one message."""
    async with run_gateway(make_config(tmp_path, emulator)) as gateway:
        smtp = await SmtpDialogue.open(*gateway.smtp_address)
        await smtp.command("EHLO attacker")
        await smtp.command("MAIL FROM:<scanner@contoso.com>")
        await smtp.command("RCPT TO:<alice@contoso.com>")
        assert (await smtp.command("DATA")).startswith("354")
        smuggled = (
            b"MAIL FROM:<scanner@contoso.com>\r\nRCPT TO:<victim@contoso.com>\r\nDATA\r\n"
            b"From: scanner@contoso.com\r\nTo: victim@contoso.com\r\n\r\nsmuggled\r\n"
        )
        await smtp.send_raw(MESSAGE + b"text" + ending + smuggled + b".\r\n")
        assert (await smtp.reply()).startswith("250 2.0.0 queued as")
        await smtp.command("QUIT")
        await smtp.close()
        await gateway.delivered(1)
    [only] = emulator.delivered()
    assert only.recipients["to"] == ["alice@contoso.com"]
    assert all("victim" not in a for field in only.recipients.values() for a in field)


async def test_commands_pipelined_before_starttls_are_discarded(
    tmp_path: Path, emulator: Emulator
) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "t.crt"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "t.key"))
    smtp_settings = {
        "tls": {"cert_file": str(tmp_path / "t.crt"), "key_file": str(tmp_path / "t.key")},
        "listeners": [{"name": "lan", "address": "127.0.0.1", "port": 0, "tls": "starttls"}],
    }
    context = ssl.create_default_context()
    ca.configure_trust(context)
    async with run_gateway(make_config(tmp_path, emulator, smtp=smtp_settings)) as gateway:
        smtp = await SmtpDialogue.open(*gateway.smtp_address)
        await smtp.command("EHLO injector")
        await smtp.send_raw(b"STARTTLS\r\nMAIL FROM:<scanner@contoso.com>\r\n")
        assert (await smtp.reply()).startswith("220")
        await smtp.writer.start_tls(context, server_hostname="127.0.0.1")
        # The injected MAIL was dropped: the first reply inside TLS answers our own NOOP, not
        # the MAIL ("250 2.1.0 Sender OK") that was pipelined in clear text.
        assert await smtp.command("NOOP") == "250 OK"
        await smtp.close()


def proxy_v2(source: str, port: int) -> bytes:
    signature = b"\r\n\r\n\x00\r\nQUIT\n"
    body = ipaddress.IPv4Address(source).packed + ipaddress.IPv4Address("127.0.0.1").packed
    body += struct.pack("!HH", port, 25)
    return signature + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


async def closed_without_greeting(reader: asyncio.StreamReader) -> bool:
    """The server hung up without a word (a reset counts: it had unread input)."""
    try:
        return await reader.read() == b""
    except ConnectionResetError:
        return True


PROXIED = {
    "listeners": [
        {"name": "lan", "address": "127.0.0.1", "port": 0, "proxy_protocol_from": ["127.0.0.1"]}
    ]
}
BEHIND = [{"name": "office", "networks": ["192.0.2.0/24"], "senders": ["*@contoso.com"]}]


@pytest.mark.parametrize(
    "header",
    [b"PROXY TCP4 192.0.2.10 127.0.0.1 40000 25\r\n", proxy_v2("192.0.2.10", 40000)],
    ids=["v1", "v2"],
)
async def test_proxy_protocol_uses_the_real_client_address(
    tmp_path: Path, emulator: Emulator, header: bytes
) -> None:
    config = make_config(tmp_path, emulator, smtp=PROXIED, clients=BEHIND)
    async with run_gateway(config) as gateway:
        reader, writer = await asyncio.open_connection(*gateway.smtp_address)
        writer.write(header)
        smtp = SmtpDialogue(reader, writer)
        assert (await smtp.reply()).startswith("220")  # 127.0.0.1 itself is no client
        for command in ("EHLO lb", "MAIL FROM:<scanner@contoso.com>", "RCPT TO:<a@contoso.com>"):
            assert (await smtp.command(command))[0] == "2"
        assert (await smtp.command("DATA")).startswith("354")
        await smtp.send_raw(MESSAGE.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        assert (await smtp.reply()).startswith("250")
        await smtp.close()
        await gateway.delivered(1)


async def test_proxy_protocol_policy_and_trust(tmp_path: Path, emulator: Emulator) -> None:
    config = make_config(tmp_path, emulator, smtp=PROXIED, clients=BEHIND)
    async with run_gateway(config) as gateway:
        reader, writer = await asyncio.open_connection(*gateway.smtp_address)
        writer.write(b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 25\r\n")  # not an office address
        assert (await reader.readline()).startswith(b"554 5.7.1")
        writer.close()
        reader, writer = await asyncio.open_connection(*gateway.smtp_address)
        writer.write(b"EHLO no-proxy-header\r\n")  # a client talking past the balancer
        assert await closed_without_greeting(reader)
        writer.close()
    untrusted = {"listeners": [{**PROXIED["listeners"][0], "proxy_protocol_from": ["10.9.9.0/24"]}]}
    config = make_config(tmp_path, emulator, smtp=untrusted, clients=BEHIND)
    async with run_gateway(config) as gateway:
        reader, writer = await asyncio.open_connection(*gateway.smtp_address)
        writer.write(b"PROXY TCP4 192.0.2.10 127.0.0.1 40000 25\r\n")
        assert await closed_without_greeting(reader)  # 127.0.0.1 may not send PROXY headers
        writer.close()


async def test_scanner_with_bare_lf_and_long_lines_is_delivered(
    tmp_path: Path, emulator: Emulator
) -> None:
    """Old devices end lines with LF and put whole PDFs on one line: accepted, sent as CRLF."""
    body = b"%PDF-1.4 " + b"Q" * 20_000
    raw = MESSAGE.replace(b"\r\n", b"\n").replace(b"Your scan is attached.", body)
    async with run_gateway(make_config(tmp_path, emulator)) as gateway:
        smtp = await SmtpDialogue.open(*gateway.smtp_address)
        for command in ("EHLO mfp", "MAIL FROM:<scanner@contoso.com>", "RCPT TO:<a@contoso.com>"):
            assert (await smtp.command(command))[0] == "2"
        assert (await smtp.command("DATA")).startswith("354")
        await smtp.send_raw(raw.replace(b"\n.", b"\n..") + b"\r\n.\r\nQUIT\r\n")  # pipelined QUIT
        assert (await smtp.reply()).startswith("250 2.0.0 queued as")
        assert (await smtp.reply()).startswith("221")
        await smtp.close()
        await gateway.delivered(1)
    delivered = emulator.delivered()[0].mime
    assert body in delivered
    assert b"\r\n.A line that starts with a dot\r\n" in delivered  # unstuffed once
    assert b"\n" not in delivered.replace(b"\r\n", b"")  # every line ends with CRLF


async def test_unknown_clients_can_be_refused_at_mail_instead(
    tmp_path: Path, emulator: Emulator
) -> None:
    smtp = {
        "listeners": [{"name": "lan", "address": "127.0.0.1", "port": 0}],
        "refuse_unknown_at": "mail",
    }
    config = make_config(tmp_path, emulator, smtp=smtp, clients=BEHIND)
    async with run_gateway(config) as gateway:
        dialogue = await SmtpDialogue.open(*gateway.smtp_address)  # greeted, not refused
        await dialogue.command("EHLO unknown")
        refused = await dialogue.command("MAIL FROM:<scanner@contoso.com>")
        assert refused == "550 5.7.1 Client host not allowed to use this relay"
        await dialogue.close()


@pytest.mark.parametrize(
    ("message", "reply"),
    [
        (b"X-Big: " + b"a" * 300_000 + b"\r\n" + MESSAGE, "552 5.3.4"),
        (
            b"".join(
                b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (n, n)
                for n in range(101)
            )
            + b"x\r\n",
            "554 5.6.0",
        ),
        # Folded, commented and spaced: a 1,000-deep folded message used to be accepted.
        (
            b"".join(
                b"Content-Type:\r\n multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (n, n)
                for n in range(1000)
            )
            + b"x\r\n",
            "554 5.6.0",
        ),
        (
            b"".join(
                b"Content-Type :\r\n\t(x) multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (n, n)
                for n in range(101)
            )
            + b"x\r\n",
            "554 5.6.0",
        ),
    ],
    ids=["header", "nesting", "folded nesting", "commented nesting"],
)
async def test_header_and_mime_limits(
    tmp_path: Path, emulator: Emulator, message: bytes, reply: str
) -> None:
    message = (
        b"From: scanner@contoso.com\r\n" + message if not message.startswith(b"X-") else message
    )
    async with run_gateway(make_config(tmp_path, emulator)) as gateway:
        smtp = await SmtpDialogue.open(*gateway.smtp_address)
        for command in (
            "EHLO d",
            "MAIL FROM:<scanner@contoso.com>",
            "RCPT TO:<a@contoso.com>",
            "DATA",
        ):
            await smtp.command(command)
        await smtp.send_raw(message + b".\r\n")
        assert (await smtp.reply()).startswith(reply)
        await smtp.close()
    assert emulator.delivered() == []


async def test_a_flood_of_slow_clients_does_not_starve_a_normal_one(
    tmp_path: Path, emulator: Emulator
) -> None:
    async with run_gateway(make_config(tmp_path, emulator)) as gateway:
        host, port = gateway.smtp_address
        slow = []
        refused = 0
        for _ in range(40):  # from another loopback address: 20 held, 20 turned away
            reader, writer = await asyncio.open_connection(host, port, local_addr=("127.0.0.2", 0))
            greeting = await asyncio.wait_for(reader.readline(), 10)
            refused += greeting.startswith(b"421 4.7.0")
            writer.write(b"EHL")  # and never finish the command
            slow.append((reader, writer))
        assert refused == 20
        async with asyncio.timeout(5):
            assert await gateway.send("scanner@contoso.com", ["a@contoso.com"], MESSAGE) == {}
        for _reader, writer in slow:
            writer.close()
        await gateway.delivered(1)


async def test_old_tls_device_on_an_opted_in_listener(tmp_path: Path, emulator: Emulator) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "t.crt"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "t.key"))
    smtp = {
        "tls": {
            "cert_file": str(tmp_path / "t.crt"),
            "key_file": str(tmp_path / "t.key"),
            "min_version": "tlsv1",
        },
        "listeners": [{"name": "old", "address": "127.0.0.1", "port": 0, "tls": "starttls"}],
    }
    client = ssl.create_default_context()
    ca.configure_trust(client)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            client.minimum_version = client.maximum_version = ssl.TLSVersion.TLSv1
        client.set_ciphers("DEFAULT:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot speak TLS 1.0")
    async with run_gateway(make_config(tmp_path, emulator, smtp=smtp)) as gateway:

        def old_printer() -> str:
            with smtplib.SMTP(*gateway.smtp_address, timeout=10) as device:
                device.starttls(context=client)
                version = device.sock.version()
                device.sendmail("scanner@contoso.com", ["a@contoso.com"], MESSAGE)
                return version

        try:
            version = await asyncio.to_thread(old_printer)
        except ssl.SSLError as error:
            pytest.skip(f"TLS 1.0 is disabled in this OpenSSL build: {error.reason}")
        await gateway.delivered(1)
    assert version == "TLSv1"


async def test_send_as_without_reply_to(tmp_path: Path, emulator: Emulator) -> None:
    clients = [{**PRINTERS[0], "send_as": "scans@contoso.com", "reply_to_sender": False}]
    async with run_gateway(make_config(tmp_path, emulator, clients=clients)) as gateway:
        device = with_from("MFP <mfp@printer.local>")
        assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], device) == {}
        await gateway.delivered(1)
    delivered = emulator.delivered()[0].mime
    assert b"From: MFP <scans@contoso.com>" in delivered
    assert b"Reply-To:" not in delivered


async def test_ipv6_listener(tmp_path: Path, emulator: Emulator) -> None:
    smtp = {"listeners": [{"name": "v6", "address": "::1", "port": 0}]}
    async with run_gateway(make_config(tmp_path, emulator, smtp=smtp)) as gateway:
        host, port = gateway.smtp_address
        assert host == "::1"
        dialogue = await SmtpDialogue.open(host, port)
        ehlo = await dialogue.command("EHLO v6-device")
        assert "250-8BITMIME" in ehlo and "SMTPUTF8" not in ehlo
        for command in ("MAIL FROM:<scanner@contoso.com>", "RCPT TO:<a@contoso.com>"):
            assert (await dialogue.command(command))[0] == "2"
        assert (await dialogue.command("DATA")).startswith("354")
        await dialogue.send_raw(MESSAGE.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        assert (await dialogue.reply()).startswith("250")
        await dialogue.close()
        await gateway.delivered(1)


async def test_too_many_recipients_over_the_wire(tmp_path: Path, emulator: Emulator) -> None:
    smtp = {"listeners": [{"name": "lan", "address": "127.0.0.1", "port": 0}], "max_recipients": 3}
    async with run_gateway(make_config(tmp_path, emulator, smtp=smtp)) as gateway:
        recipients = [f"r{n}@contoso.com" for n in range(5)]
        refused = await gateway.send("scanner@contoso.com", recipients, MESSAGE)
        await gateway.delivered(1)
    assert refused == dict.fromkeys(recipients[3:], (452, b"4.5.3 Too many recipients"))
    addressed = emulator.delivered()[0].recipients
    assert sorted(addressed["bcc"]) == recipients[:3]


async def test_every_refusal_at_mail_and_data_has_a_refused_line(
    tmp_path: Path, emulator: Emulator, logged: Logged
) -> None:
    """aiosmtpd's own replies (a declared SIZE= over the limit, syntax and sequence errors)
    used to leave no line; a refused line names the command, the reply and the reason."""
    async with run_gateway(make_config(tmp_path, emulator)) as gateway:
        smtp = await SmtpDialogue.open(*gateway.smtp_address)
        await smtp.command("EHLO device")
        declared = f"MAIL FROM:<scanner@contoso.com> SIZE={MIME_SUBMISSION_LIMIT + 1}"
        assert (await smtp.command(declared)).startswith("552 5.3.4")
        assert (await smtp.command("RCPT TO:<alice@contoso.com>")).startswith("503")
        assert (await smtp.command("MAIL FROM:<scanner@contoso.com>")).startswith("250")
        assert (await smtp.command("RCPT TO:<alice@contoso.com>")).startswith("250")
        assert (await smtp.command("DATA")).startswith("354")
        line = b"x" * 998 + b"\r\n"
        await smtp.send_raw(MESSAGE + line * (MIME_SUBMISSION_LIMIT // len(line) + 10) + b".\r\n")
        assert (await smtp.reply()).startswith("552 5.3.4")
        assert (await smtp.command('HU"SH" Pa55word')).startswith("500")
        await smtp.command("QUIT")
        await smtp.close()
    refused = [(r["command"], r["reply"]) for r in logged("refused")]
    assert refused == [("MAIL", 552), ("RCPT", 503), ("DATA", 552), (None, 500)]
    at_mail, _sequence, at_data, unknown = logged("refused")
    assert "SIZE=" in at_mail["reason"] and at_mail["client"] == "loopback"
    assert "size limit" in at_data["reason"]
    # The command is quoted back to the client; in the log it is left out (it may be a
    # password a device sent after a refused AUTH).
    assert unknown["status"] == 'Error: command "…" not recognized'
    assert "Pa55word" not in json.dumps(unknown)


async def test_message_size_capped_names_mode_mime_as_the_cause(
    tmp_path: Path, emulator: Emulator, logged: Logged
) -> None:
    document = config_document(tmp_path, emulator)
    document["smtp"]["max_message_size"] = "35MiB"
    document["tenants"][0].update(large_messages=True, mode="mime")
    async with run_gateway(load_config(write_config(tmp_path, document))):
        pass
    [capped] = logged("message_size_capped")
    assert "mode 'mime'" in capped["reason"] and "'contoso'" in capped["reason"]
    assert "set large_messages: true" not in capped["reason"]
