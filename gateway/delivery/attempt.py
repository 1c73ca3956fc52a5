"""One delivery attempt: lease the message, find its routes, hand it to each route's transport
in turn until one answers for it, and say how it ended (`Tried` or `Failed`).

Failover: when a route cannot sign in (no token, a token the service refuses) or its answer is
a set-up problem (Graph's ErrorAccessDenied), the next route of the message is tried at once;
the last route's result stands.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog

from gateway.errors import CorruptRecord, TransportError
from gateway.mime.headers import message_id
from gateway.mime.trace import received_header
from gateway.queue.base import Queue
from gateway.queue.model import Envelope, QueuedMessage
from gateway.routing import Route, Router
from gateway.transport import Submission, Transport

log = structlog.get_logger("gateway.delivery")


@dataclass(frozen=True, slots=True)
class Tried:
    """A transport answered for the message on `route`."""

    queued: QueuedMessage
    number: int  # which attempt this is (1 = the first)
    route: Route
    submission: Submission


@dataclass(frozen=True, slots=True)
class Failed:
    """No answer decided the message: no route, no connection, no token."""

    queued: QueuedMessage
    number: int
    reason: str
    route: Route | None = None
    code: str = ""
    configuration: bool = False  # the administrator's to fix: never bounced


Outcome = Tried | Failed


def not_the_message(outcome: Outcome) -> bool:
    """Whether the attempt failed for a reason that is not the message's own: the service is
    unavailable (5xx, 408, an SMTP server's 421) or could not be reached (a timeout, no
    connection). Not: a permanent refusal, a set-up problem, a 429 for the mailbox, no route."""
    if isinstance(outcome, Failed):
        return outcome.route is not None and not outcome.configuration
    verdict, status = outcome.submission.verdict, outcome.submission.answer.status
    if verdict.delivered or verdict.permanent or verdict.configuration:
        return False
    if outcome.submission.form == "smtp":
        return status in (0, 421)
    return status in {0, 408} or status >= 500


class Attempt:
    """Runs attempts for the engine."""

    def __init__(
        self,
        queue: Queue,
        router: Callable[[], Router],
        transport_for: Callable[[Route], Transport],
        hostname: str = "",
    ) -> None:
        self._hostname = hostname  # the `by` of the Received header
        self._queue = queue
        self._router = router
        self._transport_for = transport_for

    async def lease(self, queue_id: str) -> QueuedMessage | None:
        """The message, leased; None when it left the queue meanwhile (delivered by another
        worker, held or deleted by an administrator) or is not a whole record (set aside as
        corrupt and logged by the queue)."""
        try:
            return await self._queue.lease(queue_id)
        except CorruptRecord:
            return None

    async def run(self, queued: QueuedMessage) -> Outcome:
        """Deliver a leased message through its routes; log context is bound as it goes."""
        number = queued.attempts + 1
        structlog.contextvars.bind_contextvars(attempt=number)
        routes = self._router().routes_for(queued.envelope)
        if not routes:
            return Failed(
                queued,
                number,
                "no tenant serves the sender's domain any more; add it to a tenant's domains",
                configuration=True,
            )
        structlog.contextvars.bind_contextvars(message_id=message_id(queued.message))
        recipients = list(queued.envelope.rcpt_tos)
        trace = received(queued.envelope, self._hostname)
        for index, route in enumerate(routes, 1):
            last = index == len(routes)
            structlog.contextvars.bind_contextvars(
                tenant=route.tenant.name, mailbox=route.mailbox, route=index
            )
            try:
                submission = await self._transport_for(route).send(
                    route, queued.message, recipients, trace=trace
                )
            except TransportError as error:
                if error.credentials and not last:
                    log.warning("route_failed", reason=error.reason, code=error.code)
                    continue
                if error.sent:
                    log.warning(
                        "delivery_ambiguous",
                        reason=error.reason,
                        note="the service may have taken it; the retry may duplicate it",
                    )
                return Failed(queued, number, error.reason, route, error.code, error.credentials)
            if submission.verdict.configuration and not last:
                answer = submission.answer
                log.warning(
                    "route_failed",
                    reason=submission.verdict.explanation,
                    code=answer.code,
                    status=answer.status,
                    request_id=answer.request_id,
                )
                continue
            return Tried(queued, number, route, submission)
        raise AssertionError("the last route always returns")


def received(envelope: Envelope, hostname: str) -> bytes:
    """The Received field for a message the SMTP side accepted (none for the gateway's own
    notices, or a message queued before the session facts were kept)."""
    if envelope.trace is None:
        return b""
    return received_header(
        helo=envelope.trace.helo,
        ip=envelope.peer,
        hostname=hostname,
        protocol=envelope.trace.protocol(authenticated=bool(envelope.user)),
        queue_id=envelope.queue_id,
        recipients=envelope.rcpt_tos,
        when=envelope.received_at,
    )
