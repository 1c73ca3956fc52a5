"""The delivery engine: workers that take queued messages to Graph.

A worker takes the next due queue ID, asks the mailbox gates whether that sender's mailbox may
get another request now (Retry-After windows, pacing, at most four in flight), then leases the
message and hands it to the submitter (raw MIME, Graph JSON or draft + upload sessions, see
submit.py).
The answer decides: delivered (removed from the spool), permanent failure (held with its reason,
and a delivery status notification queued for the sender), or a retry at `Retry-After` or after
an exponential backoff — until the maximum queue lifetime, when it is held and bounced too.
Retry times and attempt histories live in the spool, so a restart changes nothing. A message is
never dropped: whatever happens, it is in the spool in exactly one state.
"""

from __future__ import annotations

import asyncio
import functools
import random
import re
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from gateway.addresses import parse_mailbox
from gateway.config import DeliverySettings
from gateway.delivery.backoff import backoff_delay
from gateway.delivery.bounces import Bouncer
from gateway.delivery.budget import SizeBudget
from gateway.delivery.classify import Outcome
from gateway.delivery.mailboxes import Admit, MailboxGates, WaitUntil
from gateway.delivery.schedule import Schedule, ScheduleClosedError
from gateway.delivery.submit import Refusal, Submitter
from gateway.errors import SpoolError, TokenError
from gateway.graph.client import GraphAnswer, GraphClient, GraphTransportError
from gateway.graph.tokens import TokenProviders
from gateway.mime.dsn import Failure
from gateway.mime.headers import message_id
from gateway.routing import Route, Router
from gateway.spool import Envelope, QueuedMessage, Spool
from gateway.spool.format import CorruptRecord
from gateway.spool.remover import Remover

log = structlog.get_logger("gateway.delivery")
T = TypeVar("T")

# Messages up to this size are leased on the event loop: a rename and a read of a few KiB from
# the page cache cost less than handing them to a thread and back (which also makes the thread
# fight the accepting loop for the GIL). Larger messages, and every fsync, stay on the delivery
# threads. Delivered messages are removed by the spool's Remover thread: an unlink can wait for
# a journal commit, and nothing needs to wait for it.
INLINE_IO_LIMIT = 64 * 1024
Logger = Any  # structlog's bound logger
_ENHANCED_STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")


def _too_many_recipients(refusal: Refusal) -> bool:
    """452 with 4.5.3 (or saying so): the server wants the rest in another transaction."""
    return refusal.code == 452 and (
        "4.5.3" in refusal.text or "too many recipients" in refusal.text.lower()
    )


def _enhanced_status(refusal: Refusal) -> str:
    """The RFC 3463 status a refusal's text starts with, else one from its reply code."""
    match = _ENHANCED_STATUS.match(refusal.text)
    if match and match.group()[0] == str(refusal.code)[0]:
        return match.group()
    return f"{str(refusal.code)[0]}.0.0" if refusal.code >= 400 else "5.0.0"


@dataclass(frozen=True, slots=True)
class DeliveryEvent:
    """The result of one attempt, for observers (metrics, tests)."""

    queue_id: str
    result: str  # "delivered" | "deferred" | "held"
    status: int | None = None
    code: str = ""
    reason: str = ""
    mailbox: str = ""
    tenant: str = ""
    duration: float | None = None  # seconds the Graph request took, when one was answered


Observer = Callable[[DeliveryEvent], None]


def route_for(envelope: Envelope, router: Router, send_as: str = "") -> Route | None:
    """The first route of a queued message: by `send_as` for the gateway's own mail (bounces),
    else by its sender (sent as the client's or user's `send_as` when one is set)."""
    address = parse_mailbox(envelope.send_as or envelope.mail_from)
    if address is None:
        return None
    return router.route(address, "" if envelope.send_as else send_as)


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
        hostname: str = "",
        rng: random.Random | None = None,
        executor: Executor | None = None,
        identity: Callable[[Envelope], tuple[str, bool]] = lambda _envelope: ("", True),
    ) -> None:
        self._executor = executor
        self._identity = identity
        self._spool = spool
        self._router = router
        self._tokens = tokens
        self._submitter = Submitter(graph, tokens, timeout=settings.request_timeout)
        self._settings = settings
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._schedule = Schedule()
        self._gates = MailboxGates(
            max_in_flight=settings.max_per_mailbox, rate_per_minute=settings.mailbox_rate
        )
        self._budget = SizeBudget(settings.max_bytes_in_flight)
        self._hostname = hostname
        self._bouncer = Bouncer(spool, settings.postmaster, hostname)
        self._remover = Remover(spool)
        self._mailboxes: dict[str, str] = {}
        self._sizes: dict[str, int] = {}
        self._tenants: dict[str, str] = {}
        self._known: set[str] = set()
        self._workers: list[asyncio.Task[None]] = []
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self.observers: list[Observer] = []

    async def _blocking(self, function: Callable[..., T], *args: Any) -> T:
        """Run spool I/O on the delivery threads, never on the threads that accept mail."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *args))

    async def _spool_io(self, queue_id: str, function: Callable[..., T], *args: Any) -> T:
        """Read a message (lease, peek): on the loop when it is known to be small (see
        `INLINE_IO_LIMIT`), else on the delivery threads."""
        if 0 < self._sizes.get(queue_id, 0) <= INLINE_IO_LIMIT:
            return function(*args)
        return await self._blocking(function, *args)

    def update_settings(self, settings: DeliverySettings) -> list[str]:
        """Take new retry, lifetime and postmaster settings; what still needs a restart."""
        old = self._settings
        fixed = [
            name
            for name in ("concurrency", "max_per_mailbox", "mailbox_rate")
            if getattr(old, name) != getattr(settings, name)
        ]
        self._settings = settings
        self._bouncer = Bouncer(self._spool, settings.postmaster, self._hostname)
        self._resume(self._budget.resize(settings.max_bytes_in_flight))
        return [f"delivery.{name}" for name in fixed]

    def gauges(self) -> dict[str, int]:
        """Deliveries under way, their total size and the messages waiting for room."""
        return {
            "in_flight": self._busy,
            "bytes_in_flight": self._budget.used,
            "waiting_for_memory": self._budget.waiting,
        }

    @property
    def depth(self) -> int:
        """Messages queued or being delivered."""
        return len(self._known)

    def submit(self, queue_id: str, delay: float = 0.0, mailbox: str = "", size: int = 0) -> None:
        """Schedule a queued message (optionally telling which mailbox it is sent as and about
        how many bytes it has: small ones are read on the loop)."""
        self._known.add(queue_id)
        if mailbox:
            self._mailboxes[queue_id] = mailbox.lower()
        if size:
            self._sizes[queue_id] = size
        self._schedule.add(queue_id, delay)

    def forget(self, queue_id: str) -> None:
        """The message left the queue (delivered, held, deleted): drop what we know of it."""
        self._known.discard(queue_id)
        self._mailboxes.pop(queue_id, None)
        self._sizes.pop(queue_id, None)
        self._tenants.pop(queue_id, None)
        self._gates.forget(queue_id)
        self._give_back(queue_id)

    def _give_back(self, queue_id: str) -> None:
        """`queue_id` is not in delivery (any more): its bytes go to those waiting for room."""
        self._resume(self._budget.give_back(queue_id))

    def _resume(self, queue_ids: list[str]) -> None:
        """Schedule messages that waited for room in memory and have it now."""
        if not self._stopping:
            for queue_id in queue_ids:
                self._schedule.add(queue_id)

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
        await asyncio.to_thread(self._remover.close)  # delivered files are gone before we stop
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
                # A bug must not kill the worker or lose the message: it stays in the spool
                # (at worst in active/, until the next start) and the worker goes on.
                log.exception("delivery_crashed", queue_id=queue_id)
            finally:
                self._busy -= 1
                if self._busy == 0:
                    self._idle.set()

    async def _mailbox_of(self, queue_id: str) -> str | None:
        mailbox = self._mailboxes.get(queue_id)
        if mailbox is None:
            try:
                envelope = await self._spool_io(queue_id, self._spool.peek, queue_id)
            except CorruptRecord:
                return ""  # lease() moves it to corrupt/ and logs it
            if envelope is None:
                return None
            self._sizes.setdefault(queue_id, envelope.size)
            route = route_for(envelope, self._router(), self._identity(envelope)[0])
            mailbox = self._mailboxes[queue_id] = route.mailbox.lower() if route else ""
        return mailbox

    async def _attempt(self, queue_id: str) -> None:
        mailbox = await self._mailbox_of(queue_id)
        if mailbox is None:
            self.forget(queue_id)  # deleted or held by an administrator meanwhile
            return
        if mailbox:
            decision = self._gates.decide(queue_id, mailbox, time.monotonic())
            if not isinstance(decision, Admit):
                self._give_back(queue_id)  # room reserved for it goes to others meanwhile
                if isinstance(decision, WaitUntil):
                    self._schedule.add(queue_id, decision.when - time.monotonic())
                return  # else queued behind the mailbox's requests in flight; release() resubmits
        if not self._budget.take(queue_id, self._sizes.get(queue_id, 0)):
            # In line for room; give_back() hands it back. Its mailbox slot goes meanwhile.
            log.info(
                "delivery_waits_for_memory",
                queue_id=queue_id,
                size=self._sizes.get(queue_id, 0),
                bytes_in_flight=self._budget.used,
                max_bytes_in_flight=self._budget.limit,
                action="it goes when deliveries under way finish; "
                "raise delivery.max_bytes_in_flight if memory allows",
            )
            self._release_mailbox(mailbox)
            return
        try:
            await self._deliver(queue_id)
        finally:
            self._give_back(queue_id)
            self._release_mailbox(mailbox)

    def _release_mailbox(self, mailbox: str) -> None:
        """A request as `mailbox` is over (or will not be made): the next one in line goes."""
        if mailbox:
            waiting = self._gates.release(mailbox)
            if waiting is not None and not self._stopping:
                self._schedule.add(waiting)

    async def _deliver(self, queue_id: str) -> None:
        try:
            queued = await self._spool_io(queue_id, self._spool.lease, queue_id)
        except CorruptRecord as error:
            self.forget(queue_id)
            log.error(
                "spool_corrupt",
                queue_id=queue_id,
                reason=str(error),
                action="moved to spool/corrupt/ for inspection",
            )
            return
        if queued is None:
            self.forget(queue_id)
            return
        attempt = queued.attempts + 1
        bound = log.bind(queue_id=queue_id, attempt=attempt)
        routes = self._routes(queued.envelope)
        if not routes:
            await self._defer(
                queued,
                attempt,
                bound,
                reason="no tenant serves the sender's domain any more; "
                "add it to a tenant's domains",
                config=True,
            )
            return
        bound = bound.bind(message_id=message_id(queued.message))
        recipients = list(queued.envelope.rcpt_tos)
        for number, route in enumerate(routes, 1):
            last = number == len(routes)
            routed = bound.bind(tenant=route.tenant.name, mailbox=route.mailbox, route=number)
            self._tenants[queued.queue_id] = route.tenant.name
            try:
                submitted = await self._submitter.submit(route, queued.message, recipients, routed)
            except TokenError as error:
                if not last:  # failover: this app cannot get a token; try the next route
                    routed.warning("route_failed", reason=error.reason, code=error.code)
                    continue
                await self._defer(
                    queued, attempt, routed, reason=error.reason, code=error.code, config=True
                )
                return
            except GraphTransportError as error:
                if error.sent:
                    routed.warning(
                        "delivery_ambiguous",
                        reason=error.reason,
                        note="Graph may have accepted it; the retry may duplicate it",
                    )
                await self._defer(queued, attempt, routed, reason=error.reason)
                return
            answer, outcome = submitted.answer, submitted.outcome
            routed = routed.bind(mode=submitted.form.value)
            if answer.code == "ErrorAccessDenied" and not last:
                routed.warning(
                    "route_failed",
                    reason=outcome.explanation,
                    code=answer.code,
                    status=answer.status,
                    request_id=answer.request_id,
                )
                continue
            await self._finish(
                queued,
                attempt,
                answer,
                outcome=outcome,
                route=route,
                bound=routed,
                refused=submitted.refused,
            )
            return

    def _routes(self, envelope: Envelope) -> list[Route]:
        """The routes for a queued message: its own mail by `send_as`, else by the sender."""
        if envelope.send_as:
            address = parse_mailbox(envelope.send_as)
            route = self._router().route(address) if address else None
            return [Route(route.tenant, envelope.send_as)] if route else []
        sender = parse_mailbox(envelope.mail_from)
        if sender is None:
            return []
        send_as, reply_to = self._identity(envelope)
        return self._router().routes(sender, send_as, reply_to_sender=reply_to)

    async def _finish(
        self,
        queued: QueuedMessage,
        attempt: int,
        answer: GraphAnswer,
        *,
        outcome: Outcome,
        route: Route,
        bound: Logger,
        refused: tuple[Refusal, ...] = (),
    ) -> None:
        details: dict[str, Any] = {
            "status": answer.status,
            "code": answer.code,
            "request_id": answer.request_id,
            "duration_ms": round(answer.duration * 1000),
        }
        if outcome.delivered:
            if refused and not await self._refused(queued, attempt, refused, bound):
                await self._defer(
                    queued, attempt, bound, reason="the deferred recipients could not be queued"
                )
                return
            self._remover.remove(queued.queue_id)
            bound.info("delivered", recipients=len(queued.envelope.rcpt_tos), **details)
            self._notify(queued.queue_id, "delivered", details, mailbox=route.mailbox)
            self.forget(queued.queue_id)
            return
        if outcome.permanent:
            failure = Failure(
                queued.envelope.rcpt_tos,
                "5.0.0",
                f"{answer.status} {answer.code}".strip(),
                outcome.explanation,
            )
            await self._hold(
                queued, attempt, failure, bound, graph_message=answer.message, **details
            )
            return
        if answer.retry_after is not None:
            self._gates.block(route.mailbox, time.monotonic() + answer.retry_after)
        await self._defer(
            queued,
            attempt,
            bound,
            reason=outcome.explanation,
            retry_after=answer.retry_after,
            config=answer.code == "ErrorAccessDenied",
            **details,
        )

    async def _refused(
        self, queued: QueuedMessage, attempt: int, refused: tuple[Refusal, ...], bound: Logger
    ) -> bool:
        """Some recipients were refused by the SMTP server while the rest took the message.

        Those it deferred (4xx) are queued again as a message of their own: at once after
        "452 4.5.3 too many recipients" (RFC 5321 §4.5.3.1.10: send the rest in another
        transaction), else after the usual backoff. Those it refused for good (5xx), or whose
        queue lifetime is over, are bounced to the sender. False if the deferred recipients
        could not be queued: the caller then keeps the whole message for another attempt.
        """
        later = tuple(refusal for refusal in refused if refusal.temporary)
        failed = [refusal for refusal in refused if not refusal.temporary]
        statuses = {_enhanced_status(refusal) for refusal in failed}
        if later:
            at_once = all(_too_many_recipients(refusal) for refusal in later)
            delay = self._retry_delay(attempt, 0.0 if at_once else None)
            if self._past_lifetime(queued, delay):
                failed.extend(later)
                statuses.add("4.4.7")  # delivery time expired, as for a whole message
            elif not await self._queue_again(queued, later, delay, bound):
                return False
        if failed:
            bound.error(
                "recipients_refused",
                refused=[refusal.recipient for refusal in failed],
                replies=[refusal.reply for refusal in failed],
                action="the others received the message; the sender is notified about these",
            )
            failure = Failure(
                tuple(refusal.recipient for refusal in failed),
                statuses.pop() if len(statuses) == 1 else "5.0.0",
                "; ".join(refusal.reply for refusal in failed)[:500],
                "the SMTP server refused these recipients",
            )
            notice = await self._blocking(self._bouncer.bounce, queued, failure)
            if notice.queue_id:
                self.submit(notice.queue_id)
        return True

    async def _queue_again(
        self, queued: QueuedMessage, later: tuple[Refusal, ...], delay: float, bound: Logger
    ) -> bool:
        """Queue the message for the deferred recipients only; False if the spool cannot."""
        recipients = tuple(refusal.recipient for refusal in later)
        replies = [refusal.reply for refusal in later]
        record = {
            "at": time.time(),
            "result": "deferred",
            "reason": f"the server deferred these recipients of {queued.queue_id} while the "
            f"others took it: {'; '.join(replies)}"[:500],
        }
        try:
            copy = await self._blocking(
                self._spool.split, queued, recipients, time.time() + delay, record
            )
        except SpoolError as error:
            bound.error(
                "recipients_requeue_failed",
                reason=str(error),
                recipients=list(recipients),
                action="the whole message stays queued and goes to every recipient again "
                "(some receive it twice); free space in the spool",
            )
            return False
        bound.warning(
            "recipients_deferred",
            recipients=list(recipients),
            replies=replies,
            new_queue_id=copy,
            retry_in_s=round(delay, 1),
            action="the others received the message; these are tried again as the new queue ID",
        )
        self.submit(
            copy, delay, mailbox=self._mailboxes.get(queued.queue_id, ""), size=len(queued.message)
        )
        return True

    async def _defer(
        self,
        queued: QueuedMessage,
        attempt: int,
        bound: Logger,
        *,
        reason: str,
        retry_after: float | None = None,
        config: bool = False,
        **details: Any,
    ) -> None:
        delay = self._retry_delay(attempt, retry_after)
        if self._past_lifetime(queued, delay):
            failure = Failure(
                queued.envelope.rcpt_tos,
                "4.4.7",
                f"{details.get('status', '')} {details.get('code', '')}".strip() or reason,
                f"gave up after {attempt} attempts: {reason}",
            )
            # Credential and permission problems are the administrator's to fix: hold the
            # message for release, but do not bounce it to the sender.
            await self._hold(
                queued, attempt, failure, bound, "", bounce=not config, expired=True, **details
            )
            return
        record = {"at": time.time(), "result": "deferred", "reason": reason, **details}
        await self._blocking(self._spool_defer, queued.queue_id, record, time.time() + delay)
        bound.warning(
            "deferred",
            reason=reason,
            retry_in_s=round(delay, 1),
            next_attempt=time.time() + delay,
            **details,
        )
        if not self._stopping:
            self._schedule.add(queued.queue_id, delay)
        self._notify(queued.queue_id, "deferred", details, reason=reason)

    def _retry_delay(self, attempt: int, given: float | None) -> float:
        """Seconds until the next attempt: `given` (Retry-After) if there is one, else backoff."""
        if given is not None:
            return given
        settings = self._settings
        return backoff_delay(
            attempt, initial=settings.retry_initial, maximum=settings.retry_max, rng=self._rng
        )

    def _past_lifetime(self, queued: QueuedMessage, delay: float) -> bool:
        """Whether waiting `delay` more seconds would keep it beyond `max_queue_lifetime`."""
        age = time.time() - queued.envelope.received_at
        return age + delay > self._settings.max_queue_lifetime

    def _spool_defer(self, queue_id: str, record: dict[str, Any], next_attempt: float) -> None:
        self._spool.record_attempt(queue_id, record)
        self._spool.release(queue_id, next_attempt)

    async def _hold(
        self,
        queued: QueuedMessage,
        attempt: int,
        failure: Failure,
        bound: Logger,
        graph_message: str,
        *,
        bounce: bool = True,
        expired: bool = False,
        **details: Any,
    ) -> None:
        reason = {
            "reason": failure.explanation,
            "graph_message": graph_message,
            "attempts": attempt,
            "expired": expired,
            **details,
        }
        await self._blocking(self._spool.hold, queued.queue_id, reason)
        bound.error("held", reason=failure.explanation, expired=expired, **details)
        if bounce:
            notice = await self._blocking(self._bouncer.bounce, queued, failure)
            if notice.queue_id:
                self.submit(notice.queue_id)
            log.info(
                "bounce",
                queue_id=queued.queue_id,
                sent=bool(notice.queue_id),
                dsn_queue_id=notice.queue_id or None,
                reason=notice.reason,
            )
        self._notify(queued.queue_id, "held", details, reason=failure.explanation)
        self.forget(queued.queue_id)

    def _notify(
        self,
        queue_id: str,
        result: str,
        details: dict[str, Any],
        *,
        reason: str = "",
        mailbox: str = "",
    ) -> None:
        status = details.get("status")
        duration = details.get("duration_ms")
        event = DeliveryEvent(
            queue_id,
            result,
            status if isinstance(status, int) else None,
            str(details.get("code", "")),
            reason,
            mailbox,
            self._tenants.pop(queue_id, "")
            if result != "deferred"
            else self._tenants.get(queue_id, ""),
            duration / 1000 if isinstance(duration, int | float) else None,
        )
        for observer in self.observers:
            observer(event)
