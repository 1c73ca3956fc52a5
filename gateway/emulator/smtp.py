"""An SMTP submission listener like smtp.office365.com:587: STARTTLS, then AUTH XOAUTH2 only.

Started when `EmulatorSettings.smtp_port` is set (0 picks a free port; `Emulator.smtp_address`
says where). The certificate is the HTTPS listener's (issued by the emulator's CA), so a client
trusts both with the same CA file. The conversation imitates Exchange Online's:

    220 smtp.emulator.invalid Microsoft ESMTP MAIL Service ready at …
    EHLO → SIZE, PIPELINING, DSN, ENHANCEDSTATUSCODES, STARTTLS (before TLS) or AUTH XOAUTH2
           (after TLS), 8BITMIME, SMTPUTF8
    AUTH before STARTTLS          504 5.7.4 Unrecognized authentication type
    AUTH XOAUTH2 <b64> (or `AUTH XOAUTH2`, `334 `, <b64>)
                                  235 2.7.0 Authentication successful
                                  535 5.7.3 Authentication unsuccessful [server time id]
    MAIL before AUTH              530 5.7.57 Client not authenticated to send mail.
    DATA whose MAIL FROM is not the authenticated user (after the final dot, as Office 365)
                                  550 5.7.60 SMTP; Client does not have permissions to send as
                                  this sender
    accepted                      250 2.0.0 OK <id> [Hostname=…]

With `EmulatorSettings.smtp_hve_accounts` it is a High Volume Email endpoint (HVE accounts send
to internal recipients only); the texts are this emulator's, the rules Microsoft's:

    MAIL FROM by an account that is not an HVE account
                                  550 5.7.1 Not a High Volume Email account
    RCPT TO outside the organisation's domains
                                  550 5.7.1 External recipients are not allowed for High Volume
                                  Email accounts

Office 365 answers a failed XOAUTH2 with `535 5.7.3` straight away (no `334` + base64 JSON
error challenge: that is Gmail's style), and so does this listener. The SASL XOAUTH2 response is
`base64("user=" + user + "\\x01auth=Bearer " + token + "\\x01\\x01")`. The token must be one this
emulator issued (signature, expiry) for Exchange Online (`aud` https://outlook.office.com,
https://outlook.office365.com or its app id), and either

- delegated, with `SMTP.Send` in `scp`, its user (`upn`/`preferred_username`) being `user=`; or
- app-only (client credentials for `https://outlook.office365.com/.default`), from an app whose
  roles include `SMTP.SendAsApp` (any app in open mode); `user=` is the mailbox to send from.

A message taken goes to the outbox as mode "smtp" for the authenticated mailbox, with the
envelope kept (see outbox.py). `Faults.smtp_fail_*` make the next transactions fail at MAIL,
RCPT or after DATA with a chosen 4xx/5xx reply; `Faults.smtp_recipient_replies` refuses chosen
recipients at RCPT TO while the others are taken.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import re
import secrets
import ssl
from dataclasses import dataclass, field
from email.utils import format_datetime
from typing import Any

from gateway.emulator.smtp_auth import (
    SmtpAuthRejected,
    SmtpPrincipal,
    parse_xoauth2,
    verify_xoauth2,
)
from gateway.emulator.smtp_delivery import deliver_smtp
from gateway.emulator.state import EmulatorState

SERVER_NAME = "smtp.emulator.invalid"
MAX_RECIPIENTS = 500  # Exchange Online's default per message
COMMAND_LIMIT = 4096  # bytes in a command line
STREAM_LIMIT = 1024 * 1024  # longest line read at all (DATA lines included)
IDLE_TIMEOUT = 300.0  # seconds without a complete line before the session is dropped
CLOSE_TIMEOUT = 2.0  # seconds for a TLS close before the connection is aborted

AUTH_OK = "235 2.7.0 Authentication successful"
AUTH_FAILED = "535 5.7.3 Authentication unsuccessful"
SEND_AS_DENIED = "550 5.7.60 SMTP; Client does not have permissions to send as this sender"
NOT_HVE = "550 5.7.1 Not a High Volume Email account"
HVE_EXTERNAL = "550 5.7.1 External recipients are not allowed for High Volume Email accounts"
TOO_BIG = "552 5.3.4 Message size exceeds fixed maximum message size"

_MAIL_FROM = re.compile(r"FROM:\s*<([^<>\s]*)>(?:\s+(.*))?", re.IGNORECASE)
_RCPT_TO = re.compile(r"TO:\s*<([^<>\s]+)>(?:\s+.*)?", re.IGNORECASE)


def _bare_cr_lines(line: bytes) -> list[bytes]:
    """A line split after every bare CR as well (each piece keeps its ending)."""
    pieces = re.split(rb"(?<=\r)(?!\n)", line)
    return [piece for piece in pieces if piece]


class SmtpListener:
    """Accepts SMTP sessions until `stop()`; each runs in its own task."""

    def __init__(self, state: EmulatorState, tls: ssl.SSLContext) -> None:
        self.state = state
        self.tls = tls
        self.address: tuple[str, int] | None = None
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[Any]] = set()

    async def start(self, host: str, port: int) -> tuple[str, int]:
        server = await asyncio.start_server(self._connected, host, port, limit=STREAM_LIMIT)
        self._server = server
        bound = server.sockets[0].getsockname()
        self.address = (str(bound[0]), int(bound[1]))
        return self.address

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        sessions = list(self._sessions)
        for task in sessions:
            task.cancel()
        await asyncio.gather(*sessions, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._sessions.add(task)
        try:
            await _Session(self.state, self.tls, reader, writer).run()
        finally:
            if task is not None:
                self._sessions.discard(task)


@dataclass
class _Transaction:
    mail_from: str
    rcpt_to: list[str] = field(default_factory=list)
    rcpt_checked: bool = False  # the RCPT-stage fault was decided for this transaction
    rcpt_failure: str | None = None


class _Session:
    def __init__(
        self,
        state: EmulatorState,
        tls: ssl.SSLContext,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.state = state
        self.tls_context = tls
        self.reader = reader
        self.writer = writer
        self.session_id = secrets.token_hex(8).upper()
        peer = writer.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        self.tls = False
        self.greeted = False
        self.principal: SmtpPrincipal | None = None
        self.transaction: _Transaction | None = None
        self.closing = False
        self.pushed_back = b""  # what a lenient DATA reader read past the end of data
        self.log = state.log.bind(smtp_session=self.session_id, peer=self.peer)

    # -- plumbing ---------------------------------------------------------------------------

    async def run(self) -> None:
        self.state.stats.smtp_connections += 1
        try:
            now = format_datetime(dt.datetime.now(dt.UTC))
            await self.reply(
                f"220 {SERVER_NAME} Microsoft ESMTP MAIL Service ready at {now} "
                "(smtp-graph-gateway emulator)"
            )
            while not self.closing:
                line = await self.read_line()
                if line is None:
                    break
                await self.dispatch(line)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            self.log.info("emulator.smtp_connection_lost")
        except Exception:
            self.log.exception("emulator.smtp_session_failed")
            with contextlib.suppress(Exception):
                await self.reply("421 4.3.2 Service not available, closing transmission channel")
        finally:
            await self._close()

    async def _close(self) -> None:
        self.writer.close()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.writer.wait_closed()
        except Exception:  # noqa: BLE001 - timeout, reset, TLS alert: the connection is gone
            self.writer.transport.abort()

    async def read_line(self) -> bytes | None:
        """The next line with its line ending; None when the client is gone or too slow."""
        if self.pushed_back:
            line, self.pushed_back = self.pushed_back, b""
            return line
        try:
            async with asyncio.timeout(IDLE_TIMEOUT):
                return await self.reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError:
            await self.reply("500 5.5.6 Line too long")
        except TimeoutError:
            await self.reply(f"421 4.4.2 {SERVER_NAME} Connection timed out")
        self.closing = True
        return None

    async def reply(self, *lines: str) -> None:
        """One reply; several lines make a multi-line reply (`250-…` then `250 …`)."""
        text = ""
        for index, line in enumerate(lines):
            if index < len(lines) - 1:
                line = f"{line[:3]}-{line[4:]}"  # noqa: PLW2901 - continuation marker
            text += line + "\r\n"
        self.writer.write(text.encode("utf-8"))
        await self.writer.drain()

    def tag(self) -> str:
        """Office 365 ends many replies with [server timestamp session-id]."""
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        return f"[{SERVER_NAME} {now} {self.session_id}]"

    async def dispatch(self, line: bytes) -> None:
        if len(line) > COMMAND_LIMIT:
            await self.reply("500 5.5.6 Line too long")
            return
        text = line.rstrip(b"\r\n").decode("utf-8", "replace")
        verb, _, argument = text.partition(" ")
        verb, argument = verb.upper(), argument.strip()
        handler = {
            "EHLO": self.ehlo,
            "HELO": self.helo,
            "STARTTLS": self.starttls,
            "AUTH": self.auth,
            "MAIL": self.mail,
            "RCPT": self.rcpt,
            "DATA": self.data,
            "RSET": self.rset,
            "NOOP": self.noop,
            "QUIT": self.quit,
            "VRFY": self.vrfy,
        }.get(verb)
        if handler is None:
            await self.reply(f"500 5.3.3 Unrecognized command '{verb[:32]}'")
            return
        await handler(argument)

    # -- commands ---------------------------------------------------------------------------

    async def ehlo(self, argument: str) -> None:
        if not argument:
            await self.reply("501 5.5.4 Invalid domain name")
            return
        self.greeted = True
        self.transaction = None
        await self.reply(
            f"250 {SERVER_NAME} Hello [{self.peer}]",
            f"250 SIZE {self.state.settings.max_message_size}",
            "250 PIPELINING",
            "250 DSN",
            "250 ENHANCEDSTATUSCODES",
            "250 AUTH XOAUTH2" if self.tls else "250 STARTTLS",
            "250 8BITMIME",
            "250 SMTPUTF8",
        )

    async def helo(self, argument: str) -> None:
        if not argument:
            await self.reply("501 5.5.4 Invalid domain name")
            return
        self.greeted = True
        self.transaction = None
        await self.reply(f"250 {SERVER_NAME} Hello [{self.peer}]")

    async def starttls(self, argument: str) -> None:
        if argument:
            await self.reply("501 5.5.4 Syntax error in parameters or arguments")
            return
        if self.tls:
            await self.reply("503 5.5.1 Bad sequence of commands: TLS is already active")
            return
        if getattr(self.reader, "_buffer", b""):  # RFC 3207: nothing may follow STARTTLS
            await self.reply("554 5.5.1 Error: commands were pipelined after STARTTLS")
            self.closing = True
            return
        await self.reply("220 2.0.0 SMTP server ready")
        await self.writer.start_tls(self.tls_context)
        self.tls = True  # RFC 3207: forget everything learnt before the handshake
        self.greeted = False
        self.principal = None
        self.transaction = None

    async def auth(self, argument: str) -> None:
        mechanism, _, initial = argument.partition(" ")
        if not self.tls:
            await self.reply("504 5.7.4 Unrecognized authentication type")
            return
        if not self.greeted:
            await self.reply("503 5.5.2 Send hello first")
            return
        if self.principal is not None:
            await self.reply("503 5.5.2 Already authenticated")
            return
        if self.transaction is not None:
            await self.reply("503 5.5.2 AUTH is not allowed during a mail transaction")
            return
        if mechanism.upper() != "XOAUTH2":
            await self.reply("504 5.7.4 Unrecognized authentication type")
            return
        response = initial.strip()
        if not response:
            await self.reply("334 ")
            line = await self.read_line()
            if line is None:
                return
            response = line.strip().decode("ascii", "replace")
            if response == "*":
                await self.reply("501 5.7.0 Authentication cancelled")
                return
        try:
            data = base64.b64decode("" if response == "=" else response, validate=True)
        except (binascii.Error, ValueError):
            self.state.stats.smtp_auth_failures += 1
            await self.reply("501 5.5.2 Cannot Decode response")
            return
        try:
            user, token = parse_xoauth2(data)
            principal = verify_xoauth2(self.state, user, token)
        except SmtpAuthRejected as exc:
            self.state.stats.smtp_auth_failures += 1
            self.log.info("emulator.smtp_auth_failed", reason=str(exc))
            await self.reply(f"{AUTH_FAILED} {self.tag()}")
            return
        self.principal = principal
        self.state.stats.smtp_auth_successes += 1
        self.log.info(
            "emulator.smtp_authenticated",
            user=principal.username,
            client_id=principal.client_id,
            delegated=principal.delegated,
        )
        await self.reply(AUTH_OK)

    async def mail(self, argument: str) -> None:
        if not self.tls:
            await self.reply("530 5.7.0 Must issue a STARTTLS command first")
            return
        if not self.greeted:
            await self.reply("503 5.5.2 Send hello first")
            return
        if self.principal is None:
            await self.reply(f"530 5.7.57 Client not authenticated to send mail. {self.tag()}")
            return
        if self.transaction is not None:
            await self.reply("503 5.5.2 Sender already specified")
            return
        match = _MAIL_FROM.fullmatch(argument)
        if match is None:
            await self.reply("501 5.5.4 Invalid arguments")
            return
        for parameter in (match.group(2) or "").split():
            key, _, value = parameter.partition("=")
            limit = self.state.settings.max_message_size
            if key.upper() == "SIZE" and value.isdigit() and int(value) > limit:
                await self.reply(TOO_BIG)
                return
        hve = {account.lower() for account in self.state.settings.smtp_hve_accounts}
        if hve and self.principal.username not in hve:
            await self.reply(f"{NOT_HVE} {self.tag()}")
            return
        injected = self.state.faults.take_smtp_failure("mail")
        if injected is not None:
            await self.reply(injected)
            return
        self.transaction = _Transaction(mail_from=match.group(1))
        await self.reply("250 2.1.0 Sender OK")

    async def rcpt(self, argument: str) -> None:
        transaction = self.transaction
        if transaction is None:
            await self.reply("503 5.5.2 Need mail command")
            return
        match = _RCPT_TO.fullmatch(argument)
        if match is None:
            await self.reply("501 5.5.4 Invalid arguments")
            return
        address = match.group(1)
        if "@" not in address.strip("@"):
            await self.reply("501 5.1.3 Invalid address")
            return
        if len(transaction.rcpt_to) >= MAX_RECIPIENTS:
            await self.reply("452 4.5.3 Too many recipients")
            return
        if not transaction.rcpt_checked:
            transaction.rcpt_checked = True
            transaction.rcpt_failure = self.state.faults.take_smtp_failure("rcpt")
        if transaction.rcpt_failure is not None:
            await self.reply(transaction.rcpt_failure)
            return
        refusal = self.state.faults.smtp_recipient_reply(address)
        if refusal is not None:
            await self.reply(refusal)
            return
        if not self._internal(address):
            await self.reply(f"{HVE_EXTERNAL} {self.tag()}")
            return
        transaction.rcpt_to.append(address)
        await self.reply("250 2.1.5 Recipient OK")

    def _internal(self, address: str) -> bool:
        """Whether `address` may be sent to: anything, except from an HVE endpoint."""
        settings = self.state.settings
        if not settings.smtp_hve_accounts:
            return True
        mailboxes = [*settings.smtp_hve_accounts, *(user.username for user in settings.users)]
        domains = {mailbox.rpartition("@")[2].lower() for mailbox in mailboxes}
        return address.rpartition("@")[2].lower() in domains

    async def data(self, argument: str) -> None:
        transaction = self.transaction
        if argument:
            await self.reply("501 5.5.4 Invalid arguments")
            return
        if transaction is None:
            await self.reply("503 5.5.2 Need mail command")
            return
        if not transaction.rcpt_to:
            await self.reply("503 5.5.2 Need rcpt command")
            return
        await self.reply("354 Start mail input; end with <CRLF>.<CRLF>")
        received = await self._read_data()
        self.transaction = None
        if received is None:
            return
        content, too_big = received
        principal = self.principal
        assert principal is not None  # MAIL needs it
        if too_big:
            await self.reply(TOO_BIG)
        elif transaction.mail_from.lower() != principal.username:
            self.log.info(
                "emulator.smtp_send_as_denied",
                mail_from=transaction.mail_from,
                user=principal.username,
            )
            await self.reply(f"{SEND_AS_DENIED} {self.tag()}")
        elif (injected := self.state.faults.take_smtp_failure("data")) is not None:
            await self.reply(injected)
        else:
            message_id = await deliver_smtp(
                self.state, principal, transaction.mail_from, transaction.rcpt_to, content
            )
            await self.reply(f"250 2.0.0 OK <{message_id}@{SERVER_NAME}> [Hostname={SERVER_NAME}]")

    async def _read_data(self) -> tuple[bytes, bool] | None:
        """(the dot-unstuffed message, whether it exceeded the size); None if the client left."""
        limit = self.state.settings.max_message_size
        lenient = self.state.settings.smtp_bare_cr_ends_lines
        chunks: list[bytes] = []
        size = 0
        while True:
            line = await self.read_line()
            if line is None:
                return None
            pieces = _bare_cr_lines(line) if lenient else [line]
            for index, piece in enumerate(pieces):
                if piece in (b".\r\n", b".\r") or (lenient and piece == b".\n"):
                    if index + 1 < len(pieces):  # the rest of the line comes as commands
                        self.pushed_back = b"".join(pieces[index + 1 :])
                    return b"".join(chunks), size > limit
                text = piece[1:] if piece.startswith(b".") else piece
                size += len(text)
                if size <= limit:
                    chunks.append(text)

    async def rset(self, argument: str) -> None:
        self.transaction = None
        await self.reply("250 2.0.0 Resetting")

    async def noop(self, argument: str) -> None:
        await self.reply("250 2.0.0 OK")

    async def quit(self, argument: str) -> None:
        await self.reply("221 2.0.0 Service closing transmission channel")
        self.closing = True

    async def vrfy(self, argument: str) -> None:
        await self.reply("252 2.1.5 Cannot VRFY user, but will accept message for delivery")
