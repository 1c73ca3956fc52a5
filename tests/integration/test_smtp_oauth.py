"""SMTP submission with XOAUTH2 against the emulator's Office 365-like listener, over real TLS.

Servers that misbehave (no STARTTLS, silence, a two-step AUTH) are tiny asyncio servers on
127.0.0.1 written here; every wait is bounded by the client's own timeout.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from gateway.emulator import (
    Emulator,
    EmulatorApp,
    EmulatorSettings,
    EmulatorUser,
    Faults,
    running_emulator,
)
from gateway.errors import TransportError
from gateway.smtp_oauth.classify import classify_smtp
from gateway.smtp_oauth.session import SmtpAnswer, submit
from gateway.smtp_oauth.wire import xoauth2
from tests.emulator.helpers import (
    PUBLIC_CLIENT,
    SECRET,
    SMTP_SEND,
    TENANT,
    get_token,
    graph_client,
    sign_in,
)

SMTP_APP = "55555555-4444-3333-2222-111111111111"
EXCHANGE_SCOPE = "https://outlook.office365.com/.default"
SCANNER = "scanner@contoso.com"
ALICE = "alice@contoso.com"
RECIPIENTS = ["rita@example.com", "carl@example.com", "hidden@example.com"]
APPS = (
    EmulatorApp(TENANT, PUBLIC_CLIENT),
    EmulatorApp(TENANT, SMTP_APP, SECRET, roles=("SMTP.SendAsApp",)),
)


@pytest.fixture
async def emulator(tmp_path: Path) -> AsyncIterator[Emulator]:
    settings = EmulatorSettings(
        host="127.0.0.1",
        port=0,
        state_dir=tmp_path / "emulator",
        apps=APPS,
        users=(EmulatorUser(ALICE, TENANT),),
        smtp_port=0,
        device_code_pending_polls=0,
    )
    async with running_emulator(settings) as running:
        yield running


@pytest.fixture
async def lenient(tmp_path: Path) -> AsyncIterator[Emulator]:
    """An emulator whose SMTP listener reads a bare CR as a line end, as some servers do."""
    settings = EmulatorSettings(
        host="127.0.0.1",
        port=0,
        state_dir=tmp_path / "lenient",
        apps=APPS,
        users=(EmulatorUser(ALICE, TENANT),),
        smtp_port=0,
        smtp_bare_cr_ends_lines=True,
    )
    async with running_emulator(settings) as running:
        yield running


async def app_token(emulator: Emulator) -> str:
    async with graph_client(emulator) as http:
        return await get_token(http, emulator, client_id=SMTP_APP, scope=EXCHANGE_SCOPE)


async def delegated_token(emulator: Emulator) -> str:
    async with graph_client(emulator) as http:
        token: str = (await sign_in(http, emulator, username=ALICE, scope=SMTP_SEND))[
            "access_token"
        ]
        return token


def message(sender: str = SCANNER) -> bytes:
    """CRLF lines, 8-bit UTF-8, and lines that need dot-stuffing (one is a lone ".")."""
    return (
        f"From: Scanner <{sender}>\r\n"
        "To: Rita <rita@example.com>\r\n"
        "Cc: carl@example.com\r\n"
        "Subject: Scan from the 2nd floor\r\n"
        "Message-ID: <scan-1@contoso.com>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        ".a line starting with a dot\r\n"
        "..two dots\r\n"
        ".\r\n"
        "Café — 8-bit text\r\n"
    ).encode()


async def send(
    emulator: Emulator,
    token: str,
    *,
    username: str = SCANNER,
    mail_from: str | None = None,
    recipients: list[str] | None = None,
    body: bytes | None = None,
    trusted: bool = True,
) -> SmtpAnswer:
    host, port = emulator.smtp_address
    return await submit(
        host=host,
        port=port,
        username=username,
        token=token,
        mail_from=mail_from or username,
        recipients=RECIPIENTS if recipients is None else recipients,
        message=body or message(username),
        ca_file=emulator.ca_file if trusted else None,
        timeout=5,
        local_hostname="gateway.test",
    )


def assert_no_secret(answer: SmtpAnswer, token: str) -> None:
    for text in (repr(answer), *classify_smtp(answer)):
        assert token not in text
        assert token[:40] not in text


# -- through the emulator ------------------------------------------------------------------


async def test_app_only_token_delivers_the_bytes_and_envelope(emulator: Emulator) -> None:
    token = await app_token(emulator)

    answer = await send(emulator, token)

    assert (answer.code, answer.stage, answer.refused) == (250, "done", ())
    assert answer.text.startswith("2.0.0 OK <")
    assert answer.duration > 0
    assert classify_smtp(answer)[0] == "delivered"
    assert_no_secret(answer, token)
    [delivered] = emulator.delivered()
    assert (delivered.mode, delivered.mailbox, delivered.client_id) == ("smtp", SCANNER, SMTP_APP)
    assert delivered.mime == message(SCANNER)  # byte for byte, dots and 8-bit included
    assert delivered.envelope is not None
    assert delivered.envelope.mail_from == SCANNER
    assert delivered.envelope.rcpt_to == tuple(RECIPIENTS)
    assert delivered.recipients == {
        "to": ["rita@example.com"],
        "cc": ["carl@example.com"],
        "bcc": ["hidden@example.com"],
    }
    assert delivered.subject == "Scan from the 2nd floor"
    assert (emulator.stats.smtp_auth_successes, emulator.stats.smtp_messages) == (1, 1)


@pytest.mark.parametrize("ending", [b"\r.\r\n", b"\r.\r", b"\n.\r"])
async def test_a_stored_bare_cr_dot_cannot_end_the_upstream_data(
    lenient: Emulator, ending: bytes
) -> None:
    """The gateway keeps `\r.\r\n` inside a message (only CRLF.CRLF ends its own DATA); sent
    on, it must not end DATA at a server that reads a bare CR as a line end, where the rest
    would run as commands (SMTP smuggling). Every line start, bare CR included, is stuffed."""
    token = await app_token(lenient)
    smuggled = (
        b"MAIL FROM:<ceo@contoso.com>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n"
        b"Subject: smuggled\r\n\r\nsmuggled\r\n"
    )
    body = message(SCANNER) + b"before" + ending + smuggled + b"after\r\n"

    answer = await send(lenient, token, body=body)

    assert (answer.code, answer.stage) == (250, "done"), answer
    [delivered] = lenient.delivered()
    assert delivered.mime == body  # whole: the smuggled lines are text of this message
    assert lenient.stats.smtp_messages == 1


async def test_delegated_token_delivers_as_the_signed_in_user(emulator: Emulator) -> None:
    token = await delegated_token(emulator)

    answer = await send(emulator, token, username=ALICE, recipients=["rita@example.com"])

    assert classify_smtp(answer)[0] == "delivered", answer
    [delivered] = emulator.delivered()
    assert (delivered.mailbox, delivered.client_id, delivered.mode) == (
        ALICE,
        PUBLIC_CLIENT,
        "smtp",
    )
    assert delivered.envelope is not None
    assert delivered.envelope.rcpt_to == ("rita@example.com",)
    assert delivered.mime == message(ALICE)


async def test_forged_and_expired_tokens_are_a_credentials_problem(emulator: Emulator) -> None:
    good = await app_token(emulator)
    header, claims, signature = good.split(".")
    forged = f"{header}.{claims}.{signature[:-6]}AAAAAA"
    now = int(time.time())
    expired = emulator.state.issuer.issue(
        {
            "aud": "https://outlook.office365.com",
            "iat": now - 7200,
            "nbf": now - 7200,
            "exp": now - 3600,
            "roles": ["SMTP.SendAsApp"],
            "idtyp": "app",
            "tid": TENANT,
            "appid": SMTP_APP,
        }
    )
    for token in (forged, expired):
        answer = await send(emulator, token)

        assert (answer.code, answer.stage) == (535, "auth")
        assert answer.text.startswith("5.7.3 Authentication unsuccessful")
        outcome, explanation = classify_smtp(answer)
        assert outcome == "credentials"
        for hint in ("New-ServicePrincipal", "Add-MailboxPermission", "Set-CASMailbox"):
            assert hint in explanation
        assert_no_secret(answer, token)
    assert emulator.delivered() == []
    assert emulator.stats.smtp_auth_failures == 2


async def test_sending_as_another_address_is_held(emulator: Emulator) -> None:
    token = await app_token(emulator)

    answer = await send(emulator, token, mail_from="ceo@contoso.com")

    assert (answer.code, answer.stage) == (550, "data")
    assert answer.text.startswith(
        "5.7.60 SMTP; Client does not have permissions to send as this sender"
    )
    outcome, explanation = classify_smtp(answer)
    assert outcome == "hold"
    assert "5.7.60" in explanation and "Send As" in explanation
    assert emulator.delivered() == []


@pytest.mark.parametrize(
    ("stage", "reply", "outcome"),
    [
        ("mail", "421 4.3.2 Service not available", "retry"),
        ("rcpt", "451 4.3.0 Temporary server error. Please try again later.", "retry"),
        ("data", "451 4.3.0 Temporary server error. Please try again later.", "retry"),
        ("data", "554 5.6.0 Corrupt message content", "hold"),
    ],
)
async def test_injected_replies(emulator: Emulator, stage: str, reply: str, outcome: str) -> None:
    token = await app_token(emulator)
    emulator.set_faults(Faults(smtp_fail_count=1, smtp_fail_at=stage, smtp_fail_reply=reply))

    answer = await send(emulator, token)

    assert (answer.code, answer.stage) == (int(reply[:3]), stage)
    assert answer.text == reply[4:]
    result, explanation = classify_smtp(answer)
    assert result == outcome
    assert reply[4:] in explanation
    if stage == "rcpt":  # every recipient refused: the RCPT answers decide
        assert answer.refused == tuple(RECIPIENTS)
        assert {code for code, _ in answer.refused_replies} == {451}
    assert emulator.delivered() == []
    assert classify_smtp(await send(emulator, token))[0] == "delivered"  # the fault is spent
    assert len(emulator.delivered()) == 1


async def test_recipients_refused_at_rcpt_are_reported(emulator: Emulator) -> None:
    token = await app_token(emulator)

    answer = await send(
        emulator, token, recipients=["rita@example.com", "nobody", "carl@example.com"]
    )

    assert (answer.code, answer.stage) == (250, "done")
    assert answer.refused == ("nobody",)
    assert answer.refused_replies == ((501, "5.1.3 Invalid address"),)
    outcome, explanation = classify_smtp(answer)
    assert outcome == "delivered"
    assert "nobody (501 5.1.3 Invalid address)" in explanation
    [delivered] = emulator.delivered()
    assert delivered.envelope is not None
    assert delivered.envelope.rcpt_to == ("rita@example.com", "carl@example.com")

    every = await send(emulator, token, recipients=["nobody", "nobody-else"])
    assert (every.code, every.stage, every.refused) == (501, "rcpt", ("nobody", "nobody-else"))
    assert classify_smtp(every)[0] == "hold"
    assert len(emulator.delivered()) == 1


async def test_an_untrusted_certificate_gets_no_token(emulator: Emulator) -> None:
    token = await app_token(emulator)

    answer = await send(emulator, token, trusted=False)  # the system store only

    assert (answer.code, answer.stage) == (0, "starttls")
    assert "not trusted" in answer.text and "ca_file" in answer.text
    assert classify_smtp(answer)[0] == "credentials"
    assert (emulator.stats.smtp_auth_successes, emulator.stats.smtp_auth_failures) == (0, 0)


async def test_envelope_addresses_that_would_inject_commands_are_not_sent(
    emulator: Emulator,
) -> None:
    token = await app_token(emulator)
    answer = await send(emulator, token, recipients=["rita@example.com>\r\nRCPT TO:<x@evil.test"])
    assert (answer.code, answer.stage) == (0, "rcpt")
    assert classify_smtp(answer)[0] == "hold"
    assert emulator.stats.smtp_connections == 0


def test_xoauth2_initial_response() -> None:
    decoded = base64.b64decode(xoauth2("scanner@contoso.com", "tok.en.sig"))
    assert decoded == b"user=scanner@contoso.com\x01auth=Bearer tok.en.sig\x01\x01"
    with pytest.raises(ValueError, match="token") as raised:
        xoauth2("scanner@contoso.com", "a\r\nb-secret")
    assert "b-secret" not in str(raised.value)


# -- servers that misbehave -----------------------------------------------------------------


class TinyServer:
    """A scripted ESMTP server on 127.0.0.1 that records everything it receives."""

    def __init__(
        self,
        *,
        tls: ssl.SSLContext | None = None,
        silent: bool = False,
        two_step_auth: bool = False,
        error_challenge: bool = False,
        pipelining: bool = True,
        answer_data: bool = True,
    ) -> None:
        self.tls = tls
        self.silent = silent
        self.two_step_auth = two_step_auth
        self.error_challenge = error_challenge
        self.pipelining = pipelining
        self.answer_data = answer_data
        self.received = bytearray()
        self.commands: list[bytes] = []
        self.message = b""
        self.data_received = asyncio.Event()
        self.address: tuple[str, int] = ("127.0.0.1", 0)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> TinyServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.address = self._server.sockets[0].getsockname()[:2]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._converse(reader, writer)
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _readline(self, reader: asyncio.StreamReader) -> bytes:
        line = await reader.readline()
        self.received += line
        return line

    def _capabilities(self, *, secure: bool) -> bytes:
        offers = b"250-AUTH XOAUTH2\r\n" if secure else b""
        if self.tls is not None and not secure:
            offers += b"250-STARTTLS\r\n"
        elif self.tls is None:
            offers += b"250-AUTH PLAIN LOGIN XOAUTH2\r\n"
        if self.pipelining:
            offers += b"250-PIPELINING\r\n"
        return b"250-tiny.test\r\n" + offers + b"250-SIZE 1000000\r\n250 8BITMIME\r\n"

    async def _take_message(self, reader: asyncio.StreamReader) -> bool:
        """Read the data up to the final dot; False (after the client left) if not answering."""
        chunks = []
        while (part := await self._readline(reader)) not in (b".\r\n", b""):
            chunks.append(part)
        self.message = b"".join(chunks)
        self.data_received.set()
        if not self.answer_data:
            self.received += await reader.read()  # hang until the client gives up
        return self.answer_data

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.silent:
            self.received += await reader.read()  # until the client gives up
            return
        writer.write(b"220 tiny.test ESMTP\r\n")
        secure = False
        while line := await self._readline(reader):
            self.commands.append(line)
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(self._capabilities(secure=secure))
            elif verb == b"STAR" and self.tls is not None:
                writer.write(b"220 2.0.0 go ahead\r\n")
                await writer.start_tls(self.tls)
                secure = True
            elif verb == b"AUTH":
                if self.error_challenge:  # Gmail's style: a base64 JSON challenge, then 535
                    writer.write(b"334 " + base64.b64encode(b'{"status":"401"}') + b"\r\n")
                    self.commands.append(await self._readline(reader))
                    writer.write(b"535 5.7.8 Username and Password not accepted\r\n")
                    await writer.drain()
                    continue
                if self.two_step_auth:
                    writer.write(b"334 \r\n")
                    self.commands.append(await self._readline(reader))
                writer.write(b"235 2.7.0 Authentication successful\r\n")
            elif verb in (b"MAIL", b"RCPT"):
                writer.write(b"250 2.1.0 OK\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go\r\n")
                if not await self._take_message(reader):
                    return
                writer.write(b"250 2.0.0 OK queued\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 bye\r\n")
                return
            else:
                writer.write(b"500 5.5.2 what\r\n")
            await writer.drain()


@pytest.fixture(scope="module")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(tls_ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


@pytest.fixture
def ca_file(tls_ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "tiny-ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return path


TINY_MESSAGE = b"Subject: hi\r\n\r\n.hello\r\n"
TINY_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0aW55In0.not-a-real-signature"  # JWT-shaped


async def submit_to(server: TinyServer, *, ca_file: Path | None, timeout: float = 5) -> SmtpAnswer:
    host, port = server.address
    return await submit(
        host=host,
        port=port,
        username=SCANNER,
        token=TINY_TOKEN,
        mail_from=SCANNER,
        recipients=["rita@example.com"],
        message=TINY_MESSAGE,
        ca_file=ca_file,
        timeout=timeout,
    )


async def test_a_server_without_starttls_never_sees_the_token() -> None:
    async with TinyServer(tls=None) as server:
        answer = await submit_to(server, ca_file=None)

    assert (answer.code, answer.stage) == (0, "starttls")
    outcome, explanation = classify_smtp(answer)
    assert outcome == "credentials"
    assert "does not offer STARTTLS" in explanation and "token was not sent" in explanation
    assert [c.split()[0] for c in server.commands] == [b"EHLO", b"QUIT"]
    assert b"AUTH" not in server.received.upper()
    assert b"eyJ" not in server.received
    assert base64.b64encode(b"user=") not in server.received


async def test_two_step_xoauth2_and_mail_parameters(
    tls_server: ssl.SSLContext, ca_file: Path
) -> None:
    async with TinyServer(tls=tls_server, two_step_auth=True, pipelining=False) as server:
        answer = await submit_to(server, ca_file=ca_file)

    assert (answer.code, answer.stage) == (250, "done")
    verbs = [c.split()[0].upper() for c in server.commands]
    assert verbs[:4] == [b"EHLO", b"STARTTLS", b"EHLO", b"AUTH"]
    sasl = xoauth2(SCANNER, TINY_TOKEN)
    assert server.commands[3] == f"AUTH XOAUTH2 {sasl}\r\n".encode()
    assert server.commands[4] == f"{sasl}\r\n".encode()  # the response again, on its own line
    assert server.commands[5] == (
        f"MAIL FROM:<{SCANNER}> SIZE={len(TINY_MESSAGE)} BODY=8BITMIME\r\n".encode()
    )
    assert server.message == b"Subject: hi\r\n\r\n..hello\r\n"  # dot-stuffed on the wire


async def test_an_error_challenge_gets_an_empty_line_then_the_final_reply(
    tls_server: ssl.SSLContext, ca_file: Path
) -> None:
    async with TinyServer(tls=tls_server, error_challenge=True) as server:
        answer = await submit_to(server, ca_file=ca_file)

    assert (answer.code, answer.stage) == (535, "auth")
    assert (
        answer.text
        == '5.7.8 Username and Password not accepted (server challenge: {"status":"401"})'
    )
    assert classify_smtp(answer)[0] == "credentials"
    assert server.commands[4] == b"\r\n"
    assert [c.split()[0] for c in server.commands[5:]] == [b"QUIT"]


async def test_a_server_that_never_answers_times_out() -> None:
    async with TinyServer(silent=True) as server:
        started = time.monotonic()
        with pytest.raises(TransportError) as raised:
            await submit_to(server, ca_file=None, timeout=0.3)
        elapsed = time.monotonic() - started

    assert raised.value.sent is False
    assert "no answer within 0.3 s" in raised.value.reason
    assert elapsed < 2
    assert server.received == b""


async def test_silence_after_the_data_is_ambiguous(
    tls_server: ssl.SSLContext, ca_file: Path
) -> None:
    async with TinyServer(tls=tls_server, answer_data=False) as server:
        with pytest.raises(TransportError) as raised:
            await submit_to(server, ca_file=ca_file, timeout=0.5)

    assert server.data_received.is_set()
    assert raised.value.sent is True  # the server may have taken it
    assert "eyJ" not in str(raised.value) and "eyJ" not in repr(raised.value)
