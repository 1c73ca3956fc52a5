"""The aiosmtpd protocol, extended with a connect-time check, session tracking and draining.

`GatewaySMTP` runs on the application's own event loop (no threaded Controller). It asks the
handler whether a new peer may connect before the greeting, registers itself so a shutdown can
reach every open session, and during a drain lets a transaction in progress finish before it
says goodbye with 421.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import ipaddress
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AnyStr

from aiosmtpd.proxy_protocol import get_proxy
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, Session, TLSSetupException

from gateway import replies
from gateway.config import Client, User
from gateway.config.model import IPNetwork
from gateway.routing import Route
from gateway.smtp.data import receive_data

if TYPE_CHECKING:
    from gateway.smtp.registry import SessionRegistry

_PROXY_TIMEOUT = 10.0
# After a closing 421, how long a TLS connection may wait for the client's close_notify before
# it is cut (asyncio waits 30 s; a client that is not reading never sends it).
_CLOSE_GRACE = 1.0

# aiosmtpd's built-in replies, as the gateway's named replies (enhanced codes, clear texts).
_TRANSLATED = {
    "552 Error: message size exceeds fixed maximum message size": str(replies.MESSAGE_TOO_BIG),
    "552 Error: Too much mail data": str(replies.MESSAGE_TOO_BIG),
    "530 Must issue a STARTTLS command first": str(replies.STARTTLS_FIRST),
    "501 Error: SMTPUTF8 disabled": str(replies.NO_SMTPUTF8),
    "500 Error: strict ASCII mode": str(replies.NO_SMTPUTF8),
}


_HOOK_NAMES: dict[type, list[str]] = {}
# Reply text may hold TAB and printable ASCII only (RFC 5321 4.2); "\r\n" joins the lines of
# a multi-line reply and is kept.
_UNPRINTABLE = re.compile(r"[^\t\r\n\x20-\x7e]|\r(?!\n)|(?<!\r)\n")

# `<dot-atom@dot-atom>` in plain ASCII, then nothing or spaces before the parameters: the path
# nearly every client sends. Anything else goes through aiosmtpd's RFC 5322 parser.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATOM}(?:\.{_ATOM})*"
_SIMPLE_PATH = re.compile(rf"<({_DOT_ATOM}@{_DOT_ATOM})>(?:[ \t]+(?=[^ \t(])|\Z)")


def simple_path(arg: str) -> tuple[str, str] | None:
    """(address, parameters) of a MAIL/RCPT argument in the common simple form, exactly as
    aiosmtpd's parser reads it; None for every other form."""
    match = _SIMPLE_PATH.match(arg)
    return (match[1], arg[match.end() :]) if match else None


def hook_names(cls: type) -> list[str]:
    """The attributes of a class aiosmtpd turns into commands, AUTH mechanisms and hooks."""
    names = _HOOK_NAMES.get(cls)
    if names is None:
        names = [name for name in dir(cls) if name.startswith(("smtp_", "auth_", "handle_"))]
        _HOOK_NAMES[cls] = names
    return names


class GatewaySession(Session):
    """aiosmtpd's session plus what the gateway learns about the client."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.session_id = secrets.token_hex(4)
        self.client: Client | None = None
        self.user: User | None = None
        self.route: Route | None = None
        self.listener = ""
        # The handler logged the refusal about to be sent (with its reason): no second line.
        self.refusal_logged = False
        self.tls = False  # the connection is encrypted (STARTTLS or implicit TLS)

    # aiosmtpd logs a deprecation warning on every use of login_data; it sets it on every AUTH.
    @property
    def login_data(self) -> Any:
        """The login of the last successful AUTH (aiosmtpd's legacy field)."""
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """How much of the server one connection may hold (see README: `smtp` limits)."""

    max_connections: int = 200
    per_ip: int = 20
    reserved: int = 50  # slots hosts outside `clients` cannot take
    idle: float = 60.0  # to begin the first message, and the next one after each message
    login: float = 30.0  # hosts outside `clients` on an AUTH listener: to log in
    messages: int = 1000  # MAIL (and RSET) commands per connection
    junk: int = 20  # NOOP, VRFY, EXPN, HELP per connection
    recipients: int = 500  # per message

    def call_limits(self) -> dict[str, int]:
        """aiosmtpd's per-command limits: past one, `421 4.7.0 X sent too many times`."""
        junk = dict.fromkeys(("NOOP", "VRFY", "EXPN", "HELP"), self.junk)
        return {
            **junk,
            "MAIL": self.messages,
            "RSET": self.messages,
            "DATA": self.messages,
            "RCPT": self.messages * self.recipients,
            "*": max(self.junk, 100),  # EHLO, HELO, AUTH, STARTTLS, QUIT …
        }


class GatewaySMTP(SMTP):
    """One SMTP connection."""

    # Printers (HP, Xerox, Ricoh …) and Go clients expect these LOGIN prompts; aiosmtpd's
    # default "User Name\0" breaks them.
    AuthLoginUsernameChallenge = "Username:"
    AuthLoginPasswordChallenge = "Password:"

    def __init__(
        self,
        handler: Any,
        *,
        registry: SessionRegistry,
        listener: str,
        limits: SessionLimits | None = None,
        proxy_networks: tuple[IPNetwork, ...] = (),
        **kwargs: Any,
    ) -> None:
        self._limits = limits or SessionLimits()
        self._proxy_networks = proxy_networks
        super().__init__(handler, command_call_limit=self._limits.call_limits(), **kwargs)
        self._registry = registry
        self._listener = listener
        self._draining = False
        self._in_data = False
        self._continued: list[str] = []  # lines of a multi-line reply not sent yet (see push)
        self._idle_timer: asyncio.TimerHandle | None = None
        self._idle_deadline = 0.0  # loop time by which the next message must begin
        self._overdue = False  # the deadline passed during a transaction: close at its end
        self._command = ""  # the command being handled, for the `refused` line of its reply
        self._smtp_methods = {
            name: self._tracked(name, method) for name, method in self._smtp_methods.items()
        }

    def _tracked(self, name: str, method: Any) -> Any:
        """`method` (aiosmtpd's handler of command `name`), noting the command while it runs."""

        @functools.wraps(method)  # keeps aiosmtpd's HELP attributes
        async def run(arg: str | None) -> None:
            self._command = name
            try:
                await method(arg)
            finally:
                self._command = ""

        return run

    def __dir__(self) -> list[str]:
        """Only the names aiosmtpd looks for.

        aiosmtpd builds its command and AUTH tables from `dir()` and `inspect.getmembers()` of
        the protocol and the handler on every connection, evaluating every attribute on the
        way; that was a tenth of the CPU the gateway spends on a message. The names come from
        the class, so they are listed once per class.
        """
        return hook_names(type(self))

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's MAIL/RCPT address parser, with a fast path for `<user@domain>`: its own
        builds a class and a full RFC 5322 token tree for every command."""
        simple = simple_path(arg)
        if simple is None:
            try:
                return super()._getaddr(arg)
            except Exception:  # noqa: BLE001 - its RFC 5322 parser raises on `0@`, `<@a:`, `"`
                return None, None  # aiosmtpd answers: a malformed address (553 / 501)
        local_part = simple[0].rpartition("@")[0]
        if self.local_part_limit and len(local_part) > self.local_part_limit:
            return None, None
        return simple

    def _create_session(self) -> GatewaySession:
        session = GatewaySession(self.loop)
        session.listener = self._listener
        return session

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Register the connection; after STARTTLS keep what is known about the client.

        aiosmtpd starts a fresh session on the TLS upgrade (RFC 3207 forgets the SMTP state);
        the client's identity comes from its address, which TLS does not change.
        """
        previous = self.session if isinstance(self.session, GatewaySession) else None
        super().connection_made(transport)
        if previous is not None and isinstance(self.session, GatewaySession):
            self.session.session_id = previous.session_id
            self.session.client = previous.client  # (AUTH state is reset by RFC 3207)
        if isinstance(self.session, GatewaySession):
            self.session.tls = transport.get_extra_info("sslcontext") is not None
        self._registry.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        """Unregister the connection."""
        self._registry.discard(self)
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        assert self.session is not None
        if self._proxy_networks and not await self._proxy_handshake():
            if self.transport is not None:
                self.transport.close()
            return
        limits = self._limits
        peer = self.session.peer[0] if isinstance(self.session.peer, tuple) else ""
        if len(self._registry) > limits.max_connections or self._registry.count(peer) > (
            limits.per_ip
        ):
            self.event_handler.too_many(self.session, len(self._registry))
            await self.push(str(replies.TOO_MANY_CONNECTIONS))
            if self.transport is not None:
                self.transport.close()
            return
        refusal = self.event_handler.connect(self.session)
        must_log_in = refusal is None and self.event_handler.must_log_in(self.session)
        if must_log_in and self._registry.count_must_log_in(self.event_handler) > (
            limits.max_connections - limits.reserved
        ):
            # The last `reserved` slots are kept for configured clients, so hosts that are not
            # (they may only log in) cannot crowd out the printers.
            self.event_handler.too_many(self.session, len(self._registry), reserved=True)
            refusal = replies.TOO_MANY_CONNECTIONS
        if refusal is not None:
            await self.push(str(refusal))
            if self.transport is not None:
                self.transport.close()
            return
        self._arm_idle(limits.login if must_log_in else limits.idle)
        try:
            await super()._handle_client()
        finally:
            self._disarm_idle()

    # -- the idle deadline ---------------------------------------------------------------------
    # aiosmtpd's `timeout` (smtp.command_timeout) is reset by every command, so a client can
    # hold a slot for ever with NOOP or RSET. The idle deadline is not: a connection must begin
    # a message within `idle` of connecting and of its last message (a host that may only log
    # in: within `login`), however many other commands it sends. A transaction under way is
    # never cut; a deadline that passes during one closes the connection when it ends.

    def _arm_idle(self, seconds: float) -> None:
        self._disarm_idle()
        self._overdue = False
        self._idle_deadline = self.loop.time() + seconds
        self._idle_timer = self.loop.call_at(self._idle_deadline, self._idle_expired)

    def _disarm_idle(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _in_transaction(self) -> bool:
        return self._in_data or (self.envelope is not None and bool(self.envelope.mail_from))

    def _idle_expired(self) -> None:
        self._idle_timer = None
        if self._in_transaction():
            self._overdue = True
            return
        self._idle_close()

    def _idle_close(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        assert self.session is not None
        self.event_handler.idle_closed(self.session)
        self._close_with(replies.IDLE_TOO_LONG)

    def _transaction_ended(self, *, message: bool) -> None:
        """After DATA's reply or a RSET: a message sent gives a new idle period; a deadline
        that passed during the transaction closes the connection now."""
        if message and not self._draining:
            self._arm_idle(self._limits.idle)
        elif self._overdue or (self._idle_timer is None and not self._draining):
            self._idle_close()

    async def _proxy_handshake(self) -> bool:
        """Read the PROXY header (v1 or v2) a trusted balancer sends first; the real client's
        address then stands in for the balancer's in policy and logs."""
        assert self.session is not None
        balancer = self.session.peer[0] if isinstance(self.session.peer, tuple) else ""
        try:
            address = ipaddress.ip_address(balancer)
            trusted = any(
                address in network
                for network in self._proxy_networks
                if network.version == address.version
            )
        except ValueError:
            trusted = False
        if not trusted:
            self.event_handler.proxy_refused(self.session, "not a configured proxy network")
            return False
        try:
            data = await asyncio.wait_for(get_proxy(self._reader), _PROXY_TIMEOUT)
        except (TimeoutError, asyncio.IncompleteReadError):
            self.event_handler.proxy_refused(self.session, "no PROXY header in time")
            return False
        if not data.valid:
            self.event_handler.proxy_refused(self.session, data.error or "malformed PROXY header")
            return False
        if data.src_addr is not None:  # a LOCAL command (a health check) keeps the balancer's
            real: Any = (str(data.src_addr), data.src_port or 0)
            self.session.peer = real
        self.session.proxy_data = data
        return True

    def begin_drain(self) -> None:
        """Shutdown started: close now when idle, else after the current transaction."""
        self._draining = True
        idle = not self._in_data and (self.envelope is None or not self.envelope.mail_from)
        if idle:
            self._goodbye()

    def _goodbye(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._log_refusal(str(replies.SHUTTING_DOWN))
            self._close_with(replies.SHUTTING_DOWN)

    def _close_with(self, reply: replies.Reply) -> None:
        """Send a closing reply and close; a connection still open after `_CLOSE_GRACE` (a TLS
        close waiting for a silent client's close_notify) is cut, so it holds neither a
        connection slot nor a drain."""
        transport = self.transport
        assert transport is not None
        self._writer.write(f"{reply}\r\n".encode("ascii"))
        transport.close()
        if isinstance(transport, asyncio.Transport):
            self.loop.call_later(_CLOSE_GRACE, transport.abort)

    async def push(self, status: AnyStr) -> None:
        """Send a reply; aiosmtpd's own replies get the codes and texts of `replies`.

        aiosmtpd pushes a multi-line reply (EHLO's) a line at a time, one send() each; the
        lines are kept until the last one and the reply goes out in one write.
        """
        if isinstance(status, str):
            # aiosmtpd quotes a client's unknown command back: never echo control bytes.
            status = _UNPRINTABLE.sub("?", _TRANSLATED.get(status, status))
            if status[3:4] == "-" and "\n" not in status:  # a line of a multi-line reply
                self._continued.append(status)
                return
            if self._continued:
                status = "\r\n".join([*self._continued, status])
                self._continued.clear()
            self._log_refusal(status)
        elif self._continued:
            await super().push("\r\n".join(self._continued))
            self._continued.clear()
        await super().push(status)

    async def handle_exception(self, error: Exception) -> str:
        """A STARTTLS handshake the client broke off is the client's failure, not ours: a
        `tls_handshake_failed` line, no traceback (aiosmtpd then closes the connection)."""
        if isinstance(error, TLSSetupException) and isinstance(self.session, GatewaySession):
            cause = error.__cause__
            reason = getattr(cause, "reason", None) or type(cause or error).__name__
            self.event_handler.tls_failed(self.session, str(reason))
            return str(replies.UNEXPECTED)  # (not sent: the connection is closed)
        result: str = await super().handle_exception(error)
        return result

    def _log_refusal(self, status: str) -> None:
        """Every reply of 400 and over gets a `refused` line: the handler writes its own (with
        the policy reason), the rest (aiosmtpd's syntax, sequence, size and AUTH replies) here."""
        session = self.session
        if not isinstance(session, GatewaySession):
            return
        logged, session.refusal_logged = session.refusal_logged, False
        if not logged and status[:1] in ("4", "5") and status[:3].isdigit():
            self.event_handler.refused_reply(session, self._command, status)

    async def smtp_AUTH(self, arg: str) -> None:
        """AUTH with case-insensitive mechanism names and the failed-login lockout."""
        if arg:
            mechanism, _, rest = arg.strip().partition(" ")
            arg = f"{mechanism.upper()} {rest}".strip()
        refusal = self.event_handler.login_refusal(self.session)
        if refusal is not None:
            await self.push(str(refusal))
            return
        await super().smtp_AUTH(arg)

    async def auth_PLAIN(self, _server: SMTP, args: list[str]) -> AuthResult:
        """RFC 4616: `authzid NUL authcid NUL password`, inline or after an empty challenge."""
        blob = await self._initial_or_challenge(args, "")
        if blob is None:
            return AuthResult(success=False, handled=True)
        parts = blob.split(b"\0")
        if len(parts) != 3:
            return AuthResult(success=False, handled=False, message=str(replies.AUTH_SYNTAX))
        return await self._verify(parts[1], parts[2])

    async def auth_LOGIN(self, _server: SMTP, args: list[str]) -> AuthResult:
        """The LOGIN dialogue: `Username:` then `Password:` (an initial response is allowed)."""
        login = await self._initial_or_challenge(args, self.AuthLoginUsernameChallenge)
        if login is None:
            return AuthResult(success=False, handled=True)
        password = await self.challenge_auth(self.AuthLoginPasswordChallenge)
        if not isinstance(password, bytes):
            return AuthResult(success=False, handled=True)
        return await self._verify(login, password)

    async def _initial_or_challenge(self, args: list[str], challenge: str) -> bytes | None:
        if len(args) == 2:
            try:
                return base64.b64decode(args[1], validate=True)
            except binascii.Error:
                await self.push(str(replies.AUTH_SYNTAX))
                return None
        answer = await self.challenge_auth(challenge)
        return answer if isinstance(answer, bytes) else None

    async def _verify(self, login: bytes, password: bytes) -> AuthResult:
        refusal = await self.event_handler.authenticate(self.session, login, password)
        if refusal is None:
            if not self._in_transaction():
                self._arm_idle(self._limits.idle)  # logged in: the usual idle period
            return AuthResult(success=True, auth_data=LoginPassword(login, b""))
        return AuthResult(success=False, handled=False, message=str(refusal))

    async def smtp_MAIL(self, arg: str) -> None:
        """MAIL, refused with 421 once a drain has begun."""
        if self._draining:
            self._goodbye()
            return
        await super().smtp_MAIL(arg)

    async def smtp_RSET(self, arg: str) -> None:
        """RSET ends a transaction without a message: no new idle period."""
        await super().smtp_RSET(arg)
        self._transaction_ended(message=False)

    async def smtp_DATA(self, arg: str) -> None:
        """DATA, read in large chunks (see `data.read_data`); a transaction in progress when a
        drain began finishes, then the session ends."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        self._in_data = True
        receipt = self.event_handler.begin_message()
        try:
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            limit = self.data_size_limit or 2**31
            try:
                size, _received = await receive_data(self._reader, limit, receipt)
            except BaseException:  # the client left, or the session was cancelled
                await asyncio.shield(receipt.abort())
                raise
            if size is None:
                await receipt.abort()
                status = str(replies.MESSAGE_TOO_BIG)
            else:
                status = await self.event_handler.end_message(self.session, self.envelope, receipt)
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            await self.push(status)
        finally:
            self._in_data = False
        if self._draining:
            self._goodbye()
            return
        self._transaction_ended(message=status.startswith("250"))
