"""The delivery engine: workers that take queued messages to Graph.

Each attempt leases the message from the spool, routes it by sender, makes the headers agree
with the envelope, gets a token and posts the MIME to Graph. The answer decides: delivered
(removed from the spool), permanent failure (held with its reason), or a retry after
`Retry-After` or an exponential backoff. A message is never dropped: whatever happens, it is
in the spool in exactly one state.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from gateway.addresses import parse_mailbox
from gateway.config import DeliverySettings
from gateway.delivery.backoff import backoff_delay
from gateway.delivery.classify import Outcome, classify
from gateway.delivery.schedule import Schedule, ScheduleClosedError
from gateway.errors import TokenError
from gateway.graph.client import GraphAnswer, GraphClient, GraphTransportError
from gateway.graph.tokens import TokenProviders
from gateway.mime.recipients import with_envelope_bcc
from gateway.routing import Router
from gateway.spool import QueuedMessage, Spool
from gateway.spool.format import CorruptRecord

log = structlog.get_logger("gateway.delivery")


@dataclass(frozen=True, slots=True)
class DeliveryEvent:
    """The result of one attempt, for observers (metrics, tests)."""

    queue_id: str
    result: str  # "delivered" | "deferred" | "held"
    status: int | None = None
    code: str = ""
    reason: str = ""


Observer = Callable[[DeliveryEvent], None]


class DeliveryEngine:
    """Delivery workers sharing one schedule."""

    def __init__(
        self,
        *,
        spool: Spool,
        router: Callable[[], Router],
        tokens: TokenProviders,
        graph: GraphClient,
        settings: DeliverySettings,
        rng: random.Random | None = None,
    ) -> None:
        self._spool = spool
        self._router = router
        self._tokens = tokens
        self._graph = graph
        self._settings = settings
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._schedule = Schedule()
        self._workers: list[asyncio.Task[None]] = []
        self._attempts: dict[str, int] = {}
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self.observers: list[Observer] = []

    @property
    def in_flight(self) -> int:
        """Deliveries under way right now."""
        return self._busy

    def submit(self, queue_id: str, delay: float = 0.0) -> None:
        """Schedule a queued message for delivery."""
        self._schedule.add(queue_id, delay)

    def start(self) -> None:
        """Start the workers."""
        self._workers = [
            asyncio.create_task(self._work(), name=f"delivery-{index}")
            for index in range(self._settings.concurrency)
        ]

    async def drain(self, timeout: float) -> bool:
        """Take no new work, let attempts under way finish; False if some did not in time.

        Unfinished attempts are cancelled; their messages stay in the spool (active/) and are
        queued again at the next start.
        """
        self._stopping = True
        self._schedule.close()
        finished = self._idle.is_set()
        if not finished:
            try:
                await asyncio.wait_for(self._idle.wait(), timeout)
                finished = True
            except TimeoutError:
                log.warning("delivery_drain_timeout", in_flight=self._busy, timeout=timeout)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        return finished

    async def _work(self) -> None:
        while not self._stopping:
            try:
                queue_id = await self._schedule.next()
            except ScheduleClosedError:
                return
            self._busy += 1
            self._idle.clear()
            try:
                await self._attempt(queue_id)
            except Exception:
                # A bug must not kill the worker or lose the message: it stays in active/
                # until the next start, and the worker goes on with other mail.
                log.exception("delivery_crashed", queue_id=queue_id)
            finally:
                self._busy -= 1
                if self._busy == 0:
                    self._idle.set()

    async def _attempt(self, queue_id: str) -> None:
        try:
            queued = await asyncio.to_thread(self._spool.lease, queue_id)
        except CorruptRecord as error:
            log.error(
                "spool_corrupt",
                queue_id=queue_id,
                reason=str(error),
                action="moved to spool/corrupt/ for inspection",
            )
            return
        if queued is None:
            return
        attempt = self._attempts.get(queue_id, 0) + 1
        self._attempts[queue_id] = attempt
        bound = log.bind(queue_id=queue_id, attempt=attempt)
        sender = parse_mailbox(queued.envelope.mail_from)
        route = self._router().route(sender) if sender else None
        if route is None:
            await self._defer(
                queued,
                attempt,
                None,
                bound,
                reason="no tenant serves the sender's domain any more; "
                "add it to a tenant's domains",
            )
            return
        prepared = with_envelope_bcc(queued.message, list(queued.envelope.rcpt_tos))
        bound = bound.bind(tenant=route.tenant.name, mailbox=route.mailbox, mode="mime")
        provider = self._tokens.for_tenant(route.tenant)
        answer: GraphAnswer | None = None
        outcome = Outcome()
        for _try in range(2):
            try:
                token = await provider.get()
                answer = await self._graph.send_mime(
                    graph_endpoint=route.tenant.graph_endpoint,
                    mailbox=route.mailbox,
                    message=prepared.message,
                    token=token,
                    ca_file=route.tenant.ca_file,
                )
            except TokenError as error:
                await self._defer(
                    queued, attempt, None, bound, reason=error.reason, code=error.code
                )
                return
            except GraphTransportError as error:
                if error.sent:
                    bound.warning(
                        "delivery_ambiguous",
                        reason=error.reason,
                        note="Graph may have accepted it; a retry may duplicate",
                    )
                await self._defer(queued, attempt, None, bound, reason=error.reason)
                return
            outcome = classify(answer.status, answer.code)
            if not outcome.refresh_token:
                break
            provider.invalidate()
        assert answer is not None
        await self._finish(queued, attempt, answer, outcome, bound)

    async def _finish(
        self,
        queued: QueuedMessage,
        attempt: int,
        answer: GraphAnswer,
        outcome: Outcome,
        bound: structlog.typing.FilteringBoundLogger,
    ) -> None:
        details = {
            "status": answer.status,
            "code": answer.code,
            "request_id": answer.request_id,
            "duration_ms": round(answer.duration * 1000),
        }
        if outcome.delivered:
            await asyncio.to_thread(self._spool.complete, queued.queue_id)
            self._attempts.pop(queued.queue_id, None)
            bound.info("delivered", recipients=len(queued.envelope.rcpt_tos), **details)
            self._notify(DeliveryEvent(queued.queue_id, "delivered", answer.status, answer.code))
            return
        if outcome.permanent:
            reason = {
                "reason": outcome.explanation,
                "graph_message": answer.message,
                "attempts": attempt,
                **details,
            }
            await asyncio.to_thread(self._spool.hold, queued.queue_id, reason)
            self._attempts.pop(queued.queue_id, None)
            bound.error("held", reason=outcome.explanation, **details)
            event = DeliveryEvent(
                queued.queue_id, "held", answer.status, answer.code, outcome.explanation
            )
            self._notify(event)
            return
        await self._defer(
            queued, attempt, answer.retry_after, bound, reason=outcome.explanation, **details
        )

    def _notify(self, event: DeliveryEvent) -> None:
        for observer in self.observers:
            observer(event)

    async def _defer(
        self,
        queued: QueuedMessage,
        attempt: int,
        retry_after: float | None,
        bound: structlog.typing.FilteringBoundLogger,
        *,
        reason: str,
        **details: object,
    ) -> None:
        delay = (
            retry_after
            if retry_after is not None
            else backoff_delay(
                attempt,
                initial=self._settings.retry_initial,
                maximum=self._settings.retry_max,
                rng=self._rng,
            )
        )
        await asyncio.to_thread(self._spool.release, queued.queue_id, time.time() + delay)
        bound.warning(
            "deferred",
            reason=reason,
            retry_in_s=round(delay, 1),
            next_attempt=time.time() + delay,
            **details,
        )
        if not self._stopping:
            self.submit(queued.queue_id, delay)
        status = details.get("status")
        code = str(details.get("code", ""))
        status_code = status if isinstance(status, int) else None
        self._notify(DeliveryEvent(queued.queue_id, "deferred", status_code, code, reason))
