"""The SMTP hooks: apply policy at each step, store the message, answer 250 only when durable.

Decisions come from the pure `policy` module; this adapter turns them into replies and log
lines. Every refusal is one log line that names the reason; the client only ever sees the
named reply, never exception text.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import Counter

from gateway import policy, replies
from gateway.config import Client, Config
from gateway.errors import PolicyError, QueueUnavailable, SpoolError
from gateway.mime.convert import is_signed
from gateway.observability.devices import NO_DEVICES, DeviceRecorder
from gateway.observability.metrics import Metrics
from gateway.passwords import hash_password, verify_password
from gateway.queue.base import Queue
from gateway.queue.model import Arrival, Trace
from gateway.replies import Reply
from gateway.routing import Router
from gateway.smtp.lockout import FailureLimiter
from gateway.smtp.reasons import library_reason
from gateway.smtp.receipt import Receipt
from gateway.smtp.session import GatewaySession, hook_names

log = structlog.get_logger("gateway.smtp")
UNLISTED = Client(name="unlisted-network", networks=(), senders=())
# Checked against when the user does not exist, so a wrong name costs as long as a wrong password.
_UNKNOWN_USER_HASH = hash_password("no such user")


@dataclass(frozen=True, slots=True)
class PolicyState:
    """The configuration the SMTP side decides with; swapped as a whole on reload."""

    config: Config
    router: Router


def _declared_size(mail_options: list[str]) -> int | None:
    """The SIZE= a client declared at MAIL FROM (RFC 1870), if any."""
    for option in mail_options:
        name, _, value = option.partition("=")
        if name.upper() == "SIZE" and value.isdigit():
            return int(value)
    return None


_QUOTED = re.compile(r'".*"')  # first quote to last: a quoted command may hold quotes


def _peer(session: GatewaySession) -> tuple[str, int]:
    peer = session.peer
    if isinstance(peer, tuple) and len(peer) >= 2:
        return str(peer[0]), int(peer[1])
    return str(peer), 0


class Handler:
    """aiosmtpd handler shared by every listener."""

    def __init__(
        self,
        *,
        state: Callable[[], PolicyState],
        queue: Queue,
        on_queued: Callable[[str, float, str, int], None],
        capacity: Callable[[], str | None] = lambda: None,
        executor: Executor | None = None,
        metrics: Metrics | None = None,
        limiter: FailureLimiter | None = None,
        devices: DeviceRecorder = NO_DEVICES,
    ) -> None:
        self._devices = devices
        self._limiter = limiter or FailureLimiter()
        self._executor = executor
        self._metrics = metrics
        self._state = state
        self._queue = queue
        self._on_queued = on_queued
        self._capacity = capacity

    def __dir__(self) -> list[str]:
        """Only the hook names aiosmtpd looks for (see `GatewaySMTP.__dir__`)."""
        return hook_names(type(self))

    def connect(self, session: GatewaySession) -> Reply | None:
        """Before the greeting: is this peer a configured client? A reply means no."""
        ip, port = _peer(session)
        config = self._state().config
        client = policy.client_for(ip, config.clients)
        if client is None and (
            self._listener_auth(session) != "off" or config.smtp.refuse_unknown_at == "mail"
        ):
            # Admitted, but without a login it may send as nobody (550 5.7.1 at MAIL): a
            # listener offering AUTH, or smtp.refuse_unknown_at: mail.
            client = UNLISTED
        if client is None:
            self._refuse_connection(
                session, "address is in no client's networks; add it to clients", port=port
            )
            return replies.CLIENT_NOT_ALLOWED
        if not self._queue.available():
            self._refuse_connection(
                session,
                "the queue's database cannot be reached; nothing can be accepted until it is",
                reply=replies.QUEUE_UNAVAILABLE.code,
            )
            return replies.QUEUE_UNAVAILABLE
        self._count("connections", session.listener, "accepted")
        session.client = client
        log.debug(
            "connected",
            session=session.session_id,
            peer=ip,
            client=client.name,
            listener=session.listener,
        )
        return None

    async def handle_MAIL(
        self,
        server: Any,
        session: GatewaySession,
        envelope: Any,
        address: str,
        mail_options: list[str],
    ) -> str:
        """Check the envelope sender: syntax, allowed for this client, routed to a tenant."""
        assert session.client is not None
        state = self._state()
        if session.client is UNLISTED and session.user is None:
            error = PolicyError(
                replies.CLIENT_NOT_ALLOWED_AT_MAIL,
                "address is in no client's networks; add it to clients",
            )
            self._refused(session, "MAIL", error, sender=address)
            return str(error.reply)
        shortage = self._capacity()
        if shortage is not None:
            error = PolicyError(replies.SPOOL_UNAVAILABLE, f"{shortage}; new mail is refused")
            self._refused(session, "MAIL", error, sender=address)
            return str(error.reply)
        try:
            sender, route = policy.check_sender(
                address, policy.identity(session.client, session.user), state.router
            )
        except PolicyError as error:
            self._refused(session, "MAIL", error, sender=address)
            return str(error.reply)
        declared = _declared_size(mail_options)
        if declared is not None:
            try:
                policy.check_size(declared, route)
            except PolicyError as error:
                self._refused(session, "MAIL", error, sender=address)
                return str(error.reply)
        session.route = route
        envelope.mail_from = str(sender)
        envelope.mail_options.extend(mail_options)
        return str(replies.SENDER_OK)

    async def handle_RCPT(
        self,
        server: Any,
        session: GatewaySession,
        envelope: Any,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        """Check one recipient: syntax and the per-message limit."""
        limit = self._state().config.smtp.max_recipients
        try:
            recipient = policy.check_recipient(
                address,
                len(envelope.rcpt_tos),
                limit,
                policy.identity(session.client, session.user),
            )
        except PolicyError as error:
            self._refused(session, "RCPT", error, sender=envelope.mail_from)
            return str(error.reply)
        envelope.rcpt_tos.append(str(recipient))
        envelope.rcpt_options.extend(rcpt_options)
        return str(replies.RECIPIENT_OK)

    def begin_message(self) -> Receipt:
        """DATA begins: the queue writer the message streams into, and what its checks need."""
        return Receipt(self._queue.receive(), self._state().config.smtp.max_header_size)

    async def end_message(self, session: GatewaySession, envelope: Any, receipt: Receipt) -> str:
        """DATA has ended: check what came, then make it durable and answer 250 with its queue
        ID; or drop it with the reply that says why."""
        assert session.client is not None
        ip, _port = _peer(session)
        smtp = self._state().config.smtp
        header_section = receipt.header_section
        try:
            policy.check_structure(
                header_section,
                receipt.multipart_count,
                max_header=smtp.max_header_size,
                max_parts=smtp.max_multipart_parts,
            )
            if session.route is not None:
                policy.check_size(receipt.size, session.route, signed=is_signed(header_section))
            policy.check_header_syntax(header_section)
            if not (session.route is not None and session.route.rewrite_from):
                # (a From the gateway replaces anyway need not be allowed)
                policy.check_header_senders(
                    header_section, policy.identity(session.client, session.user)
                )
        except PolicyError as error:
            await receipt.abort()
            self._refused(session, "DATA", error, sender=envelope.mail_from)
            return str(error.reply)
        who = policy.identity(session.client, session.user)
        try:
            if receipt.failure is not None:
                raise receipt.failure
            queue_id = await receipt.writer.commit(
                Arrival(
                    mail_from=envelope.mail_from,
                    rcpt_tos=tuple(envelope.rcpt_tos),
                    client=session.client.name,
                    user=session.user.username if session.user else "",
                    peer=ip,
                    listener=session.listener,
                    send_as=who.send_as,
                    reply_to_sender=who.reply_to_sender,
                    mailbox=session.route.mailbox if session.route else "",
                    trace=Trace(
                        helo=session.host_name or "",
                        esmtp=bool(session.extended_smtp),
                        tls=session.tls,
                    ),
                )
            )
        except SpoolError as error:
            session.refusal_logged = True  # the `transaction` line below
            await receipt.abort()
            reply = (
                replies.NOT_STORED
                if isinstance(error, QueueUnavailable)
                else replies.SPOOL_UNAVAILABLE
            )
            log.error(
                "transaction",
                **self._transaction(session, envelope, receipt.size),
                result="deferred",
                reply=reply.code,
                reason=error.args[0],
            )
            self._count("transactions", session.listener, "deferred")
            return str(reply)
        self._on_queued(queue_id, 0.0, session.route.mailbox if session.route else "", receipt.size)
        user = session.user.username if session.user else ""
        self._devices.accepted(ip, user, session.client.name, queue_id)
        log.info(
            "transaction",
            **self._transaction(session, envelope, receipt.size),
            result="queued",
            queue_id=queue_id,
            tenant=session.route.tenant.name if session.route else None,
        )
        if self._metrics is not None:
            self._metrics.transactions.labels(session.listener, "queued").inc()
            self._metrics.received_bytes.labels(session.listener).inc(receipt.size)
        return str(replies.queued(queue_id))

    def _listener_auth(self, session: GatewaySession) -> str:
        for listener in self._state().config.smtp.listeners:
            if listener.name == session.listener:
                return listener.auth
        return "off"

    def too_many(self, session: GatewaySession, total: int, *, reserved: bool = False) -> None:
        """A connection over the total or per-address limit is turned away (421)."""
        reason = (
            "the connections left are reserved for configured clients "
            "(smtp.reserved_connections); this host may only log in"
            if reserved
            else "too many connections (smtp.max_connections / max_connections_per_ip)"
        )
        self._refuse_connection(
            session, reason, reply=replies.TOO_MANY_CONNECTIONS.code, open_connections=total
        )

    def must_log_in(self, session: GatewaySession) -> bool:
        """A host outside `clients`, admitted only to log in (AUTH), that has not logged in."""
        return session.client is UNLISTED and session.user is None

    def idle_closed(self, session: GatewaySession) -> None:
        """A connection sent no message within smtp.idle_timeout (or did not log in within
        smtp.login_timeout) and was closed with 421."""
        ip, _port = _peer(session)
        log.warning(
            "refused",
            session=session.session_id,
            command="idle",
            peer=ip,
            client=session.client.name if session.client else None,
            reply=replies.IDLE_TOO_LONG.code,
            reason="no message begun within smtp.login_timeout (the host must log in)"
            if self.must_log_in(session)
            else "no message begun within smtp.idle_timeout",
        )
        self._count("connections", session.listener, "idle")

    def proxy_refused(self, session: GatewaySession, reason: str) -> None:
        """A connection on a PROXY-protocol listener was closed before the greeting."""
        self._refuse_connection(session, f"PROXY protocol: {reason}")

    def _refuse_connection(self, session: GatewaySession, reason: str, **fields: object) -> None:
        """One log line and one metric for every connection turned away."""
        code = fields.get("reply")  # the devices page shows what the device was answered
        code = code if isinstance(code, int) else replies.CLIENT_NOT_ALLOWED.code
        self._devices.refused(_peer(session)[0], "", "", reason, code)
        session.refusal_logged = True
        log.warning(
            "connection_refused",
            session=session.session_id,
            peer=_peer(session)[0],
            listener=session.listener,
            reason=reason,
            **fields,
        )
        self._count("connections", session.listener, "refused")

    def login_refusal(self, session: GatewaySession) -> Reply | None:
        """Before an AUTH exchange: is this address locked out after failed logins?"""
        ip, _port = _peer(session)
        if self._limiter.locked(ip):
            session.refusal_logged = True
            log.warning(
                "auth_refused",
                session=session.session_id,
                peer=ip,
                reply=replies.AUTH_LOCKED_OUT.code,
                reason="locked out after repeated failed logins",
            )
            return replies.AUTH_LOCKED_OUT
        return None

    async def authenticate(
        self, session: GatewaySession, login: bytes, password: bytes
    ) -> Reply | None:
        """Check a login against the users' scrypt hashes, off the event loop, in constant time
        whether or not the user exists. None when it succeeded, else the reply: bad
        credentials, or the lockout (the attempt is counted before the check, see
        `FailureLimiter.begin`)."""
        ip, _port = _peer(session)
        name = login.decode("utf-8", "replace")
        user = next((u for u in self._state().config.users if u.username == name), None)
        if not self._limiter.begin(ip):
            session.refusal_logged = True
            log.warning(
                "auth_refused",
                session=session.session_id,
                peer=ip,
                reply=replies.AUTH_LOCKED_OUT.code,
                reason="locked out after repeated failed logins",
            )
            return replies.AUTH_LOCKED_OUT
        stored = user.password_hash.reveal() if user else _UNKNOWN_USER_HASH
        ok = await asyncio.get_running_loop().run_in_executor(
            self._executor, verify_password, password.decode("utf-8", "replace"), stored
        )
        if ok and user is not None:
            self._limiter.succeeded(ip)
            session.user = user
            log.info("authenticated", session=session.session_id, peer=ip, user=user.username)
            return None
        who, client = user.username if user else "", session.client.name if session.client else ""
        why = f"SMTP AUTH: {'wrong password' if user else 'unknown user'}"
        self._devices.refused(ip, who, client, why, replies.BAD_CREDENTIALS.code)
        session.refusal_logged = True
        log.warning(
            "auth_failed",
            session=session.session_id,
            peer=ip,
            # A name that is no user may be a password typed in the wrong field: not logged.
            user=user.username if user is not None else None,
            user_length=None if user is not None else len(name),
            reason="unknown user" if user is None else "wrong password",
            locked_out=self._limiter.locked(ip),
        )
        return replies.BAD_CREDENTIALS

    @staticmethod
    def _transaction(session: GatewaySession, envelope: Any, size: int) -> dict[str, Any]:
        """The fields of the one log line per SMTP transaction."""
        return {
            "session": session.session_id,
            "client": session.client.name if session.client else None,
            "user": session.user.username if session.user else None,
            "peer": _peer(session)[0],
            "sender": envelope.mail_from,
            "recipients": len(envelope.rcpt_tos),
            "size": size,
        }

    def _count(self, counter: str, listener: str, result: str) -> None:
        if self._metrics is not None:
            metric: Counter = getattr(self._metrics, counter)
            metric.labels(listener, result).inc()

    async def handle_exception(self, error: Exception) -> str:
        """Anything unexpected: log it with its traceback, tell the client only 451."""
        log.error("smtp_unexpected_error", error_type=type(error).__name__, exc_info=error)
        return str(replies.UNEXPECTED)

    def tls_failed(self, session: GatewaySession, reason: str) -> None:
        """The client began STARTTLS but the handshake failed (an old TLS version, a client
        that does not trust the certificate, plain text after `220 Ready to start TLS`)."""
        log.warning(
            "tls_handshake_failed",
            session=session.session_id,
            peer=_peer(session)[0],
            client=session.client.name if session.client else None,
            listener=session.listener,
            reason=reason[:200],
        )

    def refused_reply(self, session: GatewaySession, command: str, status: str) -> None:
        """A reply of 400 or over that no policy decision of ours logged (aiosmtpd's own: a
        declared SIZE= over the limit, MAIL before AUTH, syntax and sequence errors)."""
        ip, _port = _peer(session)
        code, _, text = status.partition("\r\n")[0].partition(" ")
        reason = library_reason(status, command)
        level = log.info if status.startswith(str(replies.SHUTTING_DOWN)) else log.warning
        level(
            "refused",
            session=session.session_id,
            command=command or None,
            peer=ip,
            client=session.client.name if session.client else None,
            reply=int(code),
            # An unrecognised command is quoted back; it may be a password sent as a command.
            status=_QUOTED.sub('"…"', text)[:200],
            reason=reason,
        )

    def _refused(
        self, session: GatewaySession, command: str, error: PolicyError, **fields: object
    ) -> None:
        session.refusal_logged = True
        outcome = "deferred" if error.reply.is_transient else "refused"
        self._count("transactions", session.listener, outcome)
        ip, _port = _peer(session)
        client = session.client.name if session.client else None
        user = session.user.username if session.user else ""
        self._devices.refused(
            ip, user, client or "", f"{command}: {error.reason}", error.reply.code
        )
        log.warning(
            "refused",
            session=session.session_id,
            command=command,
            peer=ip,
            client=client,
            reply=error.reply.code,
            reason=error.reason,
            **fields,
        )
