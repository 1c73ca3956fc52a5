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
import ipaddress
import re
import secrets
from typing import Any, AnyStr

from aiosmtpd.proxy_protocol import get_proxy
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, Session

from gateway import replies
from gateway.config import Client, User
from gateway.config.model import IPNetwork
from gateway.routing import Route
from gateway.smtp.data import read_data

_PROXY_TIMEOUT = 10.0

# aiosmtpd's built-in replies, as the gateway's named replies (enhanced codes, clear texts).
_TRANSLATED = {
    "552 Error: message size exceeds fixed maximum message size": str(replies.MESSAGE_TOO_BIG),
    "552 Error: Too much mail data": str(replies.MESSAGE_TOO_BIG),
    "530 Must issue a STARTTLS command first": str(replies.STARTTLS_FIRST),
    "501 Error: SMTPUTF8 disabled": str(replies.NO_SMTPUTF8),
    "500 Error: strict ASCII mode": str(replies.NO_SMTPUTF8),
}


_HOOK_NAMES: dict[type, list[str]] = {}

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

    # aiosmtpd logs a deprecation warning on every use of login_data; it sets it on every AUTH.
    @property
    def login_data(self) -> Any:
        """The login of the last successful AUTH (aiosmtpd's legacy field)."""
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


class SessionRegistry:
    """Every open SMTP session, so that shutdown can drain them."""

    def __init__(self) -> None:
        self._sessions: set[GatewaySMTP] = set()
        self._empty = asyncio.Event()
        self._empty.set()

    def __len__(self) -> int:
        return len(self._sessions)

    def add(self, protocol: GatewaySMTP) -> None:
        """Track a new connection."""
        self._sessions.add(protocol)
        self._empty.clear()

    def discard(self, protocol: GatewaySMTP) -> None:
        """Forget a closed connection."""
        self._sessions.discard(protocol)
        if not self._sessions:
            self._empty.set()

    def count(self, ip: str) -> int:
        """Open connections from one address."""
        return sum(
            1
            for protocol in self._sessions
            if protocol.session is not None
            and isinstance(protocol.session.peer, tuple)
            and protocol.session.peer[0] == ip
        )

    def begin_drain(self) -> None:
        """Ask every session to finish: idle ones close now, busy ones after their DATA."""
        for protocol in list(self._sessions):
            protocol.begin_drain()

    async def wait_empty(self, timeout: float) -> bool:
        """Wait until every session has closed; False on timeout."""
        try:
            await asyncio.wait_for(self._empty.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def abort_all(self) -> None:
        """Close every remaining connection at once."""
        for protocol in list(self._sessions):
            transport = protocol.transport
            if isinstance(transport, asyncio.Transport):
                transport.abort()


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
        limits: tuple[int, int] = (200, 20),
        proxy_networks: tuple[IPNetwork, ...] = (),
        **kwargs: Any,
    ) -> None:
        self._limits = limits
        self._proxy_networks = proxy_networks
        super().__init__(handler, **kwargs)
        self._registry = registry
        self._listener = listener
        self._draining = False
        self._in_data = False
        self._continued: list[str] = []  # lines of a multi-line reply not sent yet (see push)

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
            return super()._getaddr(arg)
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
        total, per_ip = self._limits
        peer = self.session.peer[0] if isinstance(self.session.peer, tuple) else ""
        if len(self._registry) > total or self._registry.count(peer) > per_ip:
            self.event_handler.too_many(self.session, len(self._registry))
            await self.push(str(replies.TOO_MANY_CONNECTIONS))
            if self.transport is not None:
                self.transport.close()
            return
        refusal = self.event_handler.connect(self.session)
        if refusal is not None:
            await self.push(str(refusal))
            if self.transport is not None:
                self.transport.close()
            return
        await super()._handle_client()

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
            self._writer.write(f"{replies.SHUTTING_DOWN}\r\n".encode("ascii"))
            self.transport.close()

    async def push(self, status: AnyStr) -> None:
        """Send a reply; aiosmtpd's own replies get the codes and texts of `replies`.

        aiosmtpd pushes a multi-line reply (EHLO's) a line at a time, one send() each; the
        lines are kept until the last one and the reply goes out in one write.
        """
        if isinstance(status, str):
            status = _TRANSLATED.get(status, status)
            if status[3:4] == "-" and "\n" not in status:  # a line of a multi-line reply
                self._continued.append(status)
                return
            if self._continued:
                status = "\r\n".join([*self._continued, status])
                self._continued.clear()
        elif self._continued:
            await super().push("\r\n".join(self._continued))
            self._continued.clear()
        await super().push(status)

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
        if await self.event_handler.authenticate(self.session, login, password):
            return AuthResult(success=True, auth_data=LoginPassword(login, b""))
        return AuthResult(success=False, handled=False, message=str(replies.BAD_CREDENTIALS))

    async def smtp_MAIL(self, arg: str) -> None:
        """MAIL, refused with 421 once a drain has begun."""
        if self._draining:
            self._goodbye()
            return
        await super().smtp_MAIL(arg)

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
        try:
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            content, _received = await read_data(self._reader, self.data_size_limit or 2**31)
            if content is None:
                status = str(replies.MESSAGE_TOO_BIG)
            else:
                self.envelope.content = self.envelope.original_content = content
                status = await self._call_handler_hook("DATA")
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            await self.push(status)
        finally:
            self._in_data = False
        if self._draining:
            self._goodbye()
