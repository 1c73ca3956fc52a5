"""The SMTP hooks: apply policy at each step, store the message, answer 250 only when durable.

Decisions come from the pure `policy` module; this adapter turns them into replies and log
lines. Every refusal is one log line that names the reason; the client only ever sees the
named reply, never exception text.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import Counter

from gateway import policy, replies
from gateway.config import Client, Config
from gateway.errors import PolicyError, SpoolError
from gateway.mime.convert import is_signed
from gateway.mime.headers import header_section as header_section_of
from gateway.observability.metrics import Metrics
from gateway.passwords import hash_password, verify_password
from gateway.replies import Reply
from gateway.routing import Router
from gateway.smtp.lockout import FailureLimiter
from gateway.smtp.session import GatewaySession, hook_names
from gateway.spool import Spool

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
        spool: Spool,
        on_queued: Callable[[str, float, str, int], None],
        capacity: Callable[[], str | None] = lambda: None,
        executor: Executor | None = None,
        metrics: Metrics | None = None,
        limiter: FailureLimiter | None = None,
    ) -> None:
        self._limiter = limiter or FailureLimiter()
        self._executor = executor
        self._metrics = metrics
        self._state = state
        self._spool = spool
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

    async def handle_DATA(self, server: Any, session: GatewaySession, envelope: Any) -> str:
        """Store the message durably, then answer 250 with its queue ID."""
        assert session.client is not None
        ip, _port = _peer(session)
        content: bytes = envelope.original_content
        smtp = self._state().config.smtp
        header_section = header_section_of(content)
        try:
            policy.check_structure(
                header_section,
                content,
                max_header=smtp.max_header_size,
                max_parts=smtp.max_multipart_parts,
            )
        except PolicyError as error:
            self._refused(session, "DATA", error, sender=envelope.mail_from)
            return str(error.reply)
        if session.route is not None:
            try:
                policy.check_size(
                    len(content), session.route, signed=is_signed(header_section)
                )
            except PolicyError as error:
                self._refused(session, "DATA", error, sender=envelope.mail_from)
                return str(error.reply)
        rewritten = session.route is not None and session.route.rewrite_from
        if not rewritten:  # a From the gateway replaces anyway need not be allowed
            try:
                policy.check_header_senders(
                    header_section, policy.identity(session.client, session.user)
                )
            except PolicyError as error:
                self._refused(session, "DATA", error, sender=envelope.mail_from)
                return str(error.reply)
        try:
            queue_id = await asyncio.get_running_loop().run_in_executor(
                self._executor,
                functools.partial(
                    self._spool.store,
                    mail_from=envelope.mail_from,
                    rcpt_tos=tuple(envelope.rcpt_tos),
                    message=content,
                    client=session.client.name,
                    user=session.user.username if session.user else "",
                    peer=ip,
                    listener=session.listener,
                ),
            )
        except SpoolError as error:
            log.error(
                "transaction",
                **self._transaction(session, envelope, content),
                result="deferred",
                reply=replies.SPOOL_UNAVAILABLE.code,
                reason=error.args[0],
            )
            self._count("transactions", session.listener, "deferred")
            return str(replies.SPOOL_UNAVAILABLE)
        self._on_queued(
            queue_id, 0.0, session.route.mailbox if session.route else "", len(content)
        )
        log.info(
            "transaction",
            **self._transaction(session, envelope, content),
            result="queued",
            queue_id=queue_id,
            tenant=session.route.tenant.name if session.route else None,
        )
        if self._metrics is not None:
            self._metrics.transactions.labels(session.listener, "queued").inc()
            self._metrics.received_bytes.labels(session.listener).inc(len(content))
        return str(replies.queued(queue_id))

    def _listener_auth(self, session: GatewaySession) -> str:
        for listener in self._state().config.smtp.listeners:
            if listener.name == session.listener:
                return listener.auth
        return "off"

    def too_many(self, session: GatewaySession, total: int) -> None:
        """A connection over the total or per-address limit is turned away (421)."""
        self._refuse_connection(
            session,
            "too many connections (smtp.max_connections / max_connections_per_ip)",
            reply=replies.TOO_MANY_CONNECTIONS.code,
            open_connections=total,
        )

    def proxy_refused(self, session: GatewaySession, reason: str) -> None:
        """A connection on a PROXY-protocol listener was closed before the greeting."""
        self._refuse_connection(session, f"PROXY protocol: {reason}")

    def _refuse_connection(self, session: GatewaySession, reason: str, **fields: object) -> None:
        """One log line and one metric for every connection turned away."""
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
            log.warning(
                "auth_refused",
                session=session.session_id,
                peer=ip,
                reply=replies.AUTH_LOCKED_OUT.code,
                reason="locked out after repeated failed logins",
            )
            return replies.AUTH_LOCKED_OUT
        return None

    async def authenticate(self, session: GatewaySession, login: bytes, password: bytes) -> bool:
        """Check a login against the users' scrypt hashes, off the event loop, in constant time
        whether or not the user exists; count failures for the lockout."""
        ip, _port = _peer(session)
        name = login.decode("utf-8", "replace")
        user = next((u for u in self._state().config.users if u.username == name), None)
        stored = user.password_hash.reveal() if user else _UNKNOWN_USER_HASH
        ok = await asyncio.get_running_loop().run_in_executor(
            self._executor, verify_password, password.decode("utf-8", "replace"), stored
        )
        if ok and user is not None:
            self._limiter.succeeded(ip)
            session.user = user
            log.info("authenticated", session=session.session_id, peer=ip, user=user.username)
            return True
        locked = self._limiter.failed(ip)
        log.warning(
            "auth_failed",
            session=session.session_id,
            peer=ip,
            user=name[:64],
            reason="unknown user" if user is None else "wrong password",
            locked_out=locked,
        )
        return False

    @staticmethod
    def _transaction(session: GatewaySession, envelope: Any, content: bytes) -> dict[str, Any]:
        """The fields of the one log line per SMTP transaction."""
        return {
            "session": session.session_id,
            "client": session.client.name if session.client else None,
            "user": session.user.username if session.user else None,
            "peer": _peer(session)[0],
            "sender": envelope.mail_from,
            "recipients": len(envelope.rcpt_tos),
            "size": len(content),
        }

    def _count(self, counter: str, listener: str, result: str) -> None:
        if self._metrics is not None:
            metric: Counter = getattr(self._metrics, counter)
            metric.labels(listener, result).inc()

    async def handle_exception(self, error: Exception) -> str:
        """Anything unexpected: log it with its traceback, tell the client only 451."""
        log.error("smtp_unexpected_error", error_type=type(error).__name__, exc_info=error)
        return str(replies.UNEXPECTED)

    def _refused(
        self, session: GatewaySession, command: str, error: PolicyError, **fields: object
    ) -> None:
        outcome = "deferred" if error.reply.is_transient else "refused"
        self._count("transactions", session.listener, outcome)
        ip, _port = _peer(session)
        client = session.client.name if session.client else None
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
