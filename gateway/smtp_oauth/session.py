"""One SMTP submission to Exchange Online with OAuth (smtp.office365.com:587, XOAUTH2).

The alternative to Graph sendMail (issue #6). One call is one SMTP session, spoken with asyncio
streams so that `timeout` really bounds each step and a cancelled delivery ends its connection:

    connect, 220 greeting, EHLO             stage "connect"
    STARTTLS, TLS handshake, EHLO again      stage "starttls"  (never skipped, see below)
    AUTH XOAUTH2 <initial response>          stage "auth"
    MAIL FROM, RCPT TO (pipelined if offered) stages "mail", "rcpt"
    DATA, the message, "."                   stage "data", then "done" when accepted

Security rules:

- STARTTLS always. A server that does not offer it gets no AUTH at all: the answer is a
  configuration problem ("credentials"), the token never travels in clear text. The certificate
  is verified (host name included) against the system store plus `ca_file` when given (the
  emulator's CA or a TLS-inspecting proxy's); REQUESTS_CA_BUNDLE plays no part here. A
  certificate that does not verify is reported the same way, before anything is sent.
- AUTH is only attempted over TLS and only when the server offers XOAUTH2 after STARTTLS.
- The token appears in no exception, reply text or repr: any server text is scrubbed of it.

The SASL XOAUTH2 response is `base64("user=" + user + "\\x01auth=Bearer " + token + "\\x01\\x01")`
sent as the initial response of `AUTH XOAUTH2`. Exchange Online answers at once (235, or
`535 5.7.3 Authentication unsuccessful`); a server that answers `334` with an empty challenge
gets the response again on its own line (the two-step form), one that answers `334` with a
(base64 JSON) error challenge gets an empty line and then gives its final error (Gmail's style).

The message goes with the envelope exactly as given: its bytes unchanged except for SMTP
transparency (a "." starting a line is doubled after CRLF, a bare LF and a bare CR alike, so
no lenient server can see an early end of data) and a final CRLF added when missing; MAIL FROM
carries SIZE= and BODY=8BITMIME when the server offers them (SMTPUTF8 when an address needs it).
Recipients refused at RCPT while others were accepted are reported in `refused` (with their
replies in `refused_replies`) and the message goes to the rest.

Where the explanations of `classify_smtp` come from (Microsoft Learn):

- "Authenticate an IMAP, POP or SMTP connection using OAuth"
  (learn.microsoft.com/exchange/client-developer/legacy-protocols/
  how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth): delegated scope
  `https://outlook.office.com/SMTP.Send`; app-only tokens need the "Office 365 Exchange Online"
  application permission SMTP.SendAsApp with admin consent, a token for
  `https://outlook.office365.com/.default`, and the app's service principal registered in
  Exchange Online (`New-ServicePrincipal -AppId <APPLICATION_ID> -ObjectId <OBJECT_ID>`, the
  object id of the Enterprise application, not of the App registration) and given access to
  the mailbox (`Add-MailboxPermission -Identity <mailbox> -User <SERVICE_PRINCIPAL_ID>
  -AccessRights FullAccess`).
- "Enable or disable SMTP AUTH in Exchange Online" (learn.microsoft.com/exchange/
  clients-and-mobile-in-exchange-online/authenticated-client-smtp-submission): SMTP AUTH is
  switched per organisation (`Set-TransportConfig -SmtpClientAuthenticationDisabled $false`)
  and per mailbox (`Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled
  $false`, which overrides the organisation); security defaults turn it off.
- `New-ServicePrincipal` (learn.microsoft.com/powershell/module/exchange/new-serviceprincipal).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import ssl
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from gateway.errors import GatewayError, TransportError
from gateway.smtp_oauth.classify import SmtpAnswer
from gateway.smtp_oauth.wire import (
    DotStuffer,
    Sliceable,
    decoded_challenge,
    envelope_problem,
    os_reason,
    tls_context,
    xoauth2,
)

TEXT_LIMIT = 500  # characters of server text kept in an answer
LINE_LIMIT = 64 * 1024  # longest reply line read
REPLY_LINES = 256  # most lines in one (multi-line) reply
CHUNK = 64 * 1024  # the message is written and drained in pieces of this size
CLOSE_TIMEOUT = 2.0  # seconds for QUIT and closing TLS after the outcome is known


_REPLY = re.compile(rb"([1-5][0-9][0-9])(?:([ -])(.*))?")
_WHERE = {
    "connect": "when connecting",
    "starttls": "at STARTTLS",
    "auth": "at AUTH",
    "mail": "at MAIL FROM",
    "rcpt": "at RCPT TO",
    "data": "at DATA",
    "done": "after the message",
}


async def submit(
    *,
    host: str,
    port: int,
    username: str,
    token: str,
    mail_from: str,
    recipients: Sequence[str],
    message: Sliceable,
    ca_file: Path | None,
    timeout: float,
    local_hostname: str | None = None,
) -> SmtpAnswer:
    """Send `message` to `recipients` from `mail_from` through host:port, authenticated as
    `username` with the OAuth access `token`.

    `timeout` bounds each step: connecting, the TLS handshake, every reply waited for, and each
    piece of the message written. `local_hostname` is the EHLO name (default: the address
    literal of this end of the connection, no DNS needed). Returns the answer that decided the
    outcome (see `classify.classify_smtp`); raises TransportError when the server gave none
    (`sent` when the failure came after DATA was answered 354: the server may have the message,
    so a retry may duplicate it).
    """
    started = time.monotonic()
    problem = envelope_problem(mail_from, recipients)
    if problem is not None:
        return SmtpAnswer(0, problem[1], problem[0], duration=time.monotonic() - started)
    try:
        initial_response = xoauth2(username, token)
    except ValueError as error:  # its text names the field, never the value
        return SmtpAnswer(0, str(error), "auth", duration=time.monotonic() - started)
    try:
        context = await tls_context(ca_file)
    except (OSError, ssl.SSLError) as error:
        why = f"the CA file {ca_file} cannot be used ({os_reason(error)}); nothing was sent"
        return SmtpAnswer(0, why, "starttls", duration=time.monotonic() - started)
    session = _Session(host, port, timeout, secrets=(token, initial_response))
    try:
        answer = await session.run(
            context=context,
            initial_response=initial_response,
            mail_from=mail_from,
            recipients=list(recipients),
            message=message,
            local_hostname=local_hostname,
        )
    finally:
        await session.close()
    return replace(answer, duration=time.monotonic() - started)


# -- the session -----------------------------------------------------------------------------


class _Reply(NamedTuple):
    code: int
    lines: tuple[str, ...]  # the text of each line, after the code and separator

    @property
    def text(self) -> str:
        return " ".join(line for line in self.lines if line)


class _Stop(GatewayError):
    """The outcome is decided before the end of the conversation."""

    def __init__(self, answer: SmtpAnswer) -> None:
        super().__init__(answer.stage)
        self.answer = answer


class _Session:
    """One SMTP conversation over asyncio streams; raises only TransportError."""

    def __init__(self, host: str, port: int, timeout: float, *, secrets: tuple[str, ...]) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.secrets = secrets
        self.stage = "connect"
        self.data_started = False  # the message may be with the server: failures are ambiguous
        self.sane = False  # the conversation is in step: QUIT makes sense
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    @property
    def peer(self) -> str:
        return f"{self.host}:{self.port}"

    async def run(
        self,
        *,
        context: ssl.SSLContext,
        initial_response: str,
        mail_from: str,
        recipients: list[str],
        message: Sliceable,
        local_hostname: str | None,
    ) -> SmtpAnswer:
        try:
            await self._connect()
            name = local_hostname or self._address_literal()
            features = await self._greet(name)
            features = await self._starttls(context, features, name)
            await self._authenticate(features, initial_response)
            refused = await self._envelope(features, mail_from, recipients, message)
            return await self._data(message, refused)
        except _Stop as stop:
            return stop.answer

    # -- steps ------------------------------------------------------------------------------

    async def _connect(self) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                self.reader, self.writer = await asyncio.open_connection(
                    self.host, self.port, limit=LINE_LIMIT
                )
        except TimeoutError:
            raise TransportError(
                f"could not connect to {self.peer} within {self.timeout:g} s", sent=False
            ) from None
        except OSError as error:
            raise TransportError(
                f"cannot connect to {self.peer}: {error.strerror or error}", sent=False
            ) from None
        self.sane = True

    async def _greet(self, name: str) -> dict[str, str]:
        greeting = await self._read_reply()
        if greeting.code != 220:
            raise _Stop(self._answer(greeting))
        return await self._ehlo(name)

    async def _ehlo(self, name: str) -> dict[str, str]:
        reply = await self._command(f"EHLO {name}")
        if reply.code != 250:
            raise _Stop(self._answer(reply))
        features: dict[str, str] = {}
        for line in reply.lines[1:]:
            keyword, _, parameters = line.partition(" ")
            features[keyword.lower()] = parameters.strip()
        return features

    async def _starttls(
        self, context: ssl.SSLContext, features: dict[str, str], name: str
    ) -> dict[str, str]:
        self.stage = "starttls"
        if "starttls" not in features:
            raise _Stop(
                self._refusal(
                    f"{self.peer} does not offer STARTTLS, so the token was not sent: the "
                    "gateway only authenticates over TLS. Check the SMTP endpoint (Exchange "
                    "Online: smtp.office365.com:587) and that nothing on the way (a firewall's "
                    "SMTP inspection, a proxy) strips STARTTLS"
                )
            )
        reply = await self._command("STARTTLS")
        if reply.code != 220:
            raise _Stop(self._answer(reply))
        writer = self._writer()
        try:
            async with asyncio.timeout(self.timeout):
                await writer.start_tls(context, server_hostname=self.host)
        except ssl.SSLCertVerificationError as error:
            self.sane = False
            raise _Stop(
                self._refusal(
                    f"the TLS certificate of {self.peer} is not trusted "
                    f"({error.verify_message or error.reason}), so the token was not sent; if a "
                    "proxy or test service with its own CA is in the way, give its CA as the "
                    "tenant's ca_file"
                )
            ) from None
        except TimeoutError:
            self.sane = False
            raise TransportError(
                f"no TLS handshake with {self.peer} within {self.timeout:g} s", sent=False
            ) from None
        except (ssl.SSLError, OSError) as error:
            self.sane = False
            raise TransportError(
                f"TLS handshake with {self.peer} failed: {os_reason(error)}", sent=False
            ) from None
        return await self._ehlo(name)  # RFC 3207: forget what was said before TLS

    async def _authenticate(self, features: dict[str, str], initial_response: str) -> None:
        self.stage = "auth"
        mechanisms = features.get("auth", "").upper().split()
        if "XOAUTH2" not in mechanisms:
            offered = " ".join(mechanisms) or "none"
            raise _Stop(
                self._refusal(
                    f"{self.peer} does not offer AUTH XOAUTH2 after STARTTLS (it offers: "
                    f"{offered}), so the token was not sent; check the SMTP endpoint"
                )
            )
        if self._writer().get_extra_info("ssl_object") is None:  # belt and braces
            raise _Stop(self._refusal("the connection is not encrypted; the token was not sent"))
        reply = await self._command(f"AUTH XOAUTH2 {initial_response}", secret=True)
        challenge = ""
        if reply.code == 334 and not reply.text.strip():
            reply = await self._command(initial_response, secret=True)  # the two-step form
        if reply.code == 334:
            challenge = decoded_challenge(reply.text)
            reply = await self._command("")  # an error challenge: ask for the final reply
        if reply.code == 334:
            reply = await self._command("*")  # cancel a server that keeps asking
        if reply.code != 235:
            answer = self._answer(reply)
            if challenge:
                text = self._clean(f"{answer.text} (server challenge: {challenge})")
                answer = replace(answer, text=text)
            raise _Stop(answer)

    async def _envelope(
        self, features: dict[str, str], mail_from: str, recipients: list[str], message: Sliceable
    ) -> list[tuple[str, _Reply]]:
        """The refused recipients with their replies, when at least one was accepted."""
        self.stage = "mail"
        parameters = []
        if "size" in features:
            parameters.append(f"SIZE={len(message)}")
        if "8bitmime" in features:
            parameters.append("BODY=8BITMIME")
        if not all(address.isascii() for address in [mail_from, *recipients]):
            if "smtputf8" not in features:
                raise _Stop(
                    self._refusal(
                        f"an envelope address is not ASCII and {self.peer} does not offer SMTPUTF8",
                        code_stage="mail",
                    )
                )
            parameters.append("SMTPUTF8")
        mail = " ".join([f"MAIL FROM:<{mail_from}>", *parameters])
        rcpts = [f"RCPT TO:<{address}>" for address in recipients]
        if "pipelining" in features:  # RFC 2920: MAIL and every RCPT in one go
            await self._send(mail, *rcpts)
            mail_reply = await self._read_reply()
            if mail_reply.code != 250:
                self.sane = False  # the RCPT replies are still on their way
                raise _Stop(self._answer(mail_reply))
            self.stage = "rcpt"
            replies = [await self._read_reply() for _ in rcpts]
        else:
            mail_reply = await self._command(mail)
            if mail_reply.code != 250:
                raise _Stop(self._answer(mail_reply))
            self.stage = "rcpt"
            replies = [await self._command(line) for line in rcpts]
        refused = [(a, r) for a, r in zip(recipients, replies, strict=True) if r.code >= 300]
        if len(refused) == len(recipients):
            # Decided by the RCPT answers: a temporary refusal may pass later, so it wins.
            deciding = next((r for _, r in refused if 400 <= r.code < 500), refused[0][1])
            raise _Stop(self._with_refused(self._answer(deciding), refused))
        return refused

    async def _data(self, message: Sliceable, refused: list[tuple[str, _Reply]]) -> SmtpAnswer:
        self.stage = "data"
        reply = await self._command("DATA")
        if reply.code != 354:
            raise _Stop(self._with_refused(self._answer(reply), refused))
        self.data_started = True
        self.sane = False  # until the final reply arrives
        writer = self._writer()
        stuffer = DotStuffer()
        for start in range(0, len(message), CHUNK):  # read, stuffed and sent a piece at a time
            writer.write(stuffer.feed(message[start : start + CHUNK]))
            await self._drain()
        writer.write(stuffer.end() + b".\r\n")
        await self._drain()
        reply = await self._read_reply()
        self.sane = True
        if 200 <= reply.code < 300:
            self.stage = "done"
        return self._with_refused(self._answer(reply), refused)

    async def close(self) -> None:
        """QUIT when the conversation is in step, then close (aborting a stuck TLS close)."""
        writer = self.writer
        if writer is None:
            return
        try:
            if self.sane:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(min(CLOSE_TIMEOUT, self.timeout)):
                        writer.write(b"QUIT\r\n")
                        await writer.drain()
                        await self._read_reply()
            writer.close()
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await writer.wait_closed()
        except Exception:  # noqa: BLE001 - timeout, reset, TLS alert: the connection is gone
            writer.transport.abort()

    # -- plumbing ---------------------------------------------------------------------------

    def _writer(self) -> asyncio.StreamWriter:
        assert self.writer is not None
        return self.writer

    def _address_literal(self) -> str:
        """This end's address as an EHLO address literal: [192.0.2.1] or [IPv6:2001:db8::1]."""
        local = self._writer().get_extra_info("sockname")
        try:
            address = ipaddress.ip_address(str(local[0]).split("%", 1)[0])
        except (TypeError, ValueError, IndexError):
            return "localhost"
        return f"[IPv6:{address}]" if address.version == 6 else f"[{address}]"

    async def _command(self, line: str, *, secret: bool = False) -> _Reply:
        await self._send(line, secret=secret)
        return await self._read_reply()

    async def _send(self, *lines: str, secret: bool = False) -> None:
        data = "".join(f"{line}\r\n" for line in lines).encode("utf-8")
        self._writer().write(data)
        await self._drain(secret=secret)

    async def _drain(self, *, secret: bool = False) -> None:
        what = "the credentials" if secret else "data"
        try:
            async with asyncio.timeout(self.timeout):
                await self._writer().drain()
        except TimeoutError:
            raise self._lost(f"could not send {what} within {self.timeout:g} s") from None
        except OSError as error:
            raise self._lost(f"connection lost: {os_reason(error)}") from None

    async def _read_reply(self) -> _Reply:
        reader = self.reader
        assert reader is not None
        code = 0
        lines: list[str] = []
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    raw = await reader.readline()
                    if not raw.endswith(b"\n"):
                        raise self._lost("the server closed the connection")
                    match = _REPLY.fullmatch(raw.rstrip(b"\r\n"))
                    if match is None or (code and int(match[1]) != code):
                        raise self._lost("the server's reply is not SMTP")
                    code = int(match[1])
                    lines.append(self._clean((match[3] or b"").decode("utf-8", "replace")))
                    if match[2] != b"-":
                        return _Reply(code, tuple(lines))
                    if len(lines) >= REPLY_LINES:
                        raise self._lost("the server's reply is too long")
        except TimeoutError:
            raise self._lost(f"no answer within {self.timeout:g} s") from None
        except (ValueError, asyncio.LimitOverrunError):
            raise self._lost("the server's reply line is too long") from None
        except OSError as error:
            raise self._lost(f"connection lost: {os_reason(error)}") from None

    def _lost(self, what: str) -> TransportError:
        self.sane = False
        return TransportError(
            self._clean(f"{what} ({self.peer}, {_WHERE[self.stage]})"), sent=self.data_started
        )

    def _clean(self, text: str) -> str:
        """Printable, without the token or the SASL response, at most TEXT_LIMIT characters."""
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        text = "".join(c if c.isprintable() else " " for c in text).strip()
        return text[:TEXT_LIMIT]

    def _answer(self, reply: _Reply) -> SmtpAnswer:
        return SmtpAnswer(reply.code, self._clean(reply.text), self.stage)

    def _refusal(self, text: str, *, code_stage: str | None = None) -> SmtpAnswer:
        return SmtpAnswer(0, self._clean(text), code_stage or self.stage)

    def _with_refused(self, answer: SmtpAnswer, refused: list[tuple[str, _Reply]]) -> SmtpAnswer:
        return replace(
            answer,
            refused=tuple(address for address, _ in refused),
            refused_replies=tuple((r.code, self._clean(r.text)) for _, r in refused),
        )
