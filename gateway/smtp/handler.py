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
from gateway.config import Config
from gateway.errors import PolicyError, SpoolError
from gateway.observability.metrics import Metrics
from gateway.replies import Reply
from gateway.routing import Router
from gateway.smtp.session import GatewaySession
from gateway.spool import Spool

log = structlog.get_logger("gateway.smtp")


@dataclass(frozen=True, slots=True)
class PolicyState:
    """The configuration the SMTP side decides with; swapped as a whole on reload."""

    config: Config
    router: Router


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
        on_queued: Callable[[str, float, str], None],
        capacity: Callable[[], str | None] = lambda: None,
        executor: Executor | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._executor = executor
        self._metrics = metrics
        self._state = state
        self._spool = spool
        self._on_queued = on_queued
        self._capacity = capacity

    def connect(self, session: GatewaySession) -> Reply | None:
        """Before the greeting: is this peer a configured client? A reply means no."""
        ip, port = _peer(session)
        client = policy.client_for(ip, self._state().config.clients)
        if client is None:
            log.warning(
                "connection_refused",
                session=session.session_id,
                peer=ip,
                port=port,
                listener=session.listener,
                reason="address is in no client's networks; add it to clients",
            )
            self._count("connections", session.listener, "refused")
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
        shortage = self._capacity()
        if shortage is not None:
            error = PolicyError(replies.SPOOL_UNAVAILABLE, f"{shortage}; new mail is refused")
            self._refused(session, "MAIL", error, sender=address)
            return str(error.reply)
        try:
            sender, route = policy.check_sender(address, session.client, state.router)
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
            recipient = policy.check_recipient(address, len(envelope.rcpt_tos), limit)
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
        try:
            queue_id = await asyncio.get_running_loop().run_in_executor(
                self._executor,
                functools.partial(
                    self._spool.store,
                    mail_from=envelope.mail_from,
                    rcpt_tos=tuple(envelope.rcpt_tos),
                    message=content,
                    client=session.client.name,
                    peer=ip,
                    listener=session.listener,
                ),
            )
        except SpoolError as error:
            log.error(
                "transaction",
                session=session.session_id,
                client=session.client.name,
                peer=ip,
                sender=envelope.mail_from,
                recipients=len(envelope.rcpt_tos),
                size=len(content),
                result="deferred",
                reply=replies.SPOOL_UNAVAILABLE.code,
                reason=error.args[0],
            )
            self._count("transactions", session.listener, "deferred")
            return str(replies.SPOOL_UNAVAILABLE)
        self._on_queued(queue_id, 0.0, session.route.mailbox if session.route else "")
        log.info(
            "transaction",
            session=session.session_id,
            client=session.client.name,
            peer=ip,
            sender=envelope.mail_from,
            recipients=len(envelope.rcpt_tos),
            size=len(content),
            result="queued",
            queue_id=queue_id,
            tenant=session.route.tenant.name if session.route else None,
        )
        if self._metrics is not None:
            self._metrics.transactions.labels(session.listener, "queued").inc()
            self._metrics.received_bytes.labels(session.listener).inc(len(content))
        return str(replies.queued(queue_id))

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
