"""What follows an attempt, as queue transitions: delivered (the message leaves the queue, and
recipients an SMTP server deferred are queued again apart), deferred (at `Retry-After` or after
a backoff), held (with its reason, and a notification to the sender), or — past the queue
lifetime — expired. Each returns the typed event observers hear.

Credential and permission problems are the administrator's to fix: they are retried until the
lifetime ends and then held without a notification, for `queue release`.
"""

from __future__ import annotations

import contextlib
import random
import re
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import structlog

from gateway.config import DeliverySettings
from gateway.delivery.attempt import Failed, Tried
from gateway.delivery.backoff import backoff_delay
from gateway.delivery.bounces import Bouncer
from gateway.delivery.events import DeliveryEvent
from gateway.errors import SpoolError
from gateway.mime.dsn import Failure
from gateway.queue.base import Queue, Record
from gateway.queue.model import QueuedMessage
from gateway.transport import Answer, Refusal

log = structlog.get_logger("gateway.delivery")
_ENHANCED_STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
_PACKAGE = str(Path(__file__).resolve().parents[1]).replace("\\", "/")

# (queue ID, delay in seconds, mailbox, size): a message the engine should schedule.
Schedule = Callable[[str, float, str, int], None]


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


def _details(answer: Answer | None) -> Record:
    """The answer's facts for the log and the attempt history."""
    if answer is None:
        return {}
    return {
        "status": answer.status,
        "code": answer.code,
        "request_id": answer.request_id,
        "duration_ms": round(answer.duration * 1000),
    }


def where(error: BaseException) -> str:
    """Where an exception was raised, and the last place in the gateway's own code on the way
    (`parts.py:81 _parse via transport.py:140 _convert`): enough for a bug report, no values."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return "unknown"

    def name(frame: traceback.FrameSummary) -> str:
        return f"{Path(frame.filename).name}:{frame.lineno} {frame.name}"

    ours = [frame for frame in frames if f"{_PACKAGE}/" in frame.filename.replace("\\", "/")]
    if ours and ours[-1] is not frames[-1]:
        return f"{name(frames[-1])} via {name(ours[-1])}"
    return name(frames[-1])


class Disposition:
    """Ends attempts: the queue transition, the log line, the event."""

    def __init__(
        self,
        *,
        queue: Queue,
        settings: DeliverySettings,
        hostname: str,
        schedule: Schedule,
        throttle: Callable[[str, float], Awaitable[None]],
        rng: random.Random | None = None,
    ) -> None:
        self._queue = queue
        self._schedule = schedule
        self._throttle = throttle
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._hostname = hostname
        self.settings = settings
        self._bouncer = Bouncer(queue, settings.postmaster, hostname)

    def update(self, settings: DeliverySettings) -> None:
        """New retry, lifetime and postmaster settings."""
        self.settings = settings
        self._bouncer = Bouncer(self._queue, settings.postmaster, self._hostname)

    # -- an attempt that was answered ---------------------------------------------------------

    async def answered(
        self, tried: Tried, *, outage: str = "", parked: bool = False
    ) -> DeliveryEvent:
        """A transport answered: delivered, held or deferred as its verdict says. `outage`:
        the tenant whose service failed it (not the message's fault); `parked`: it waits for
        the end of that tenant's outage."""
        queued, answer = tried.queued, tried.submission.answer
        verdict = tried.submission.verdict
        structlog.contextvars.bind_contextvars(mode=tried.submission.form)
        tenant, mailbox = tried.route.tenant.name, tried.route.mailbox
        if verdict.delivered:
            refused = tried.submission.refused
            if refused and not await self._refused(queued, tried.number, refused):
                return await self._defer(
                    queued,
                    tried.number,
                    "the deferred recipients could not be queued",
                    answer=answer,
                    tenant=tenant,
                )
            await self._queue.complete(queued.queue_id)
            log.info("delivered", recipients=len(queued.envelope.rcpt_tos), **_details(answer))
            return DeliveryEvent.of(
                queued.queue_id, "delivered", answer, mailbox=mailbox, tenant=tenant
            )
        if verdict.permanent:
            failure = Failure(
                queued.envelope.rcpt_tos,
                "5.0.0",
                f"{answer.status} {answer.code}".strip(),
                verdict.explanation,
            )
            return await self._hold(queued, tried.number, failure, answer, tenant=tenant)
        if answer.retry_after is not None:
            # Recorded before the deferral frees the mailbox's slot: in a cluster another node
            # could otherwise claim the mailbox's next message inside the Retry-After window.
            await self._throttle(mailbox, time.monotonic() + answer.retry_after)
        return await self._defer(
            queued,
            tried.number,
            verdict.explanation,
            answer=answer,
            retry_after=answer.retry_after,
            configuration=verdict.configuration,
            tenant=tenant,
            outage=outage,
            parked=parked,
        )

    async def failed(
        self, failed: Failed, *, outage: str = "", parked: bool = False
    ) -> DeliveryEvent:
        """No answer decided the message: deferred (held when its lifetime is over)."""
        return await self._defer(
            failed.queued,
            failed.number,
            failed.reason,
            code=failed.code,
            configuration=failed.configuration,
            tenant=failed.route.tenant.name if failed.route else "",
            outage=outage,
            parked=parked,
        )

    # -- recipients an SMTP server refused while the others took the message ------------------

    async def _refused(
        self, queued: QueuedMessage, number: int, refused: tuple[Refusal, ...]
    ) -> bool:
        """Those it deferred (4xx) are queued again as a message of their own: at once after
        "452 4.5.3 too many recipients" (RFC 5321 §4.5.3.1.10: send the rest in another
        transaction), else after the usual backoff. Those it refused for good (5xx), or whose
        queue lifetime is over, are bounced to the sender. False if the deferred recipients
        could not be queued: the caller then keeps the whole message for another attempt."""
        later = tuple(refusal for refusal in refused if refusal.temporary)
        failed = [refusal for refusal in refused if not refusal.temporary]
        statuses = {_enhanced_status(refusal) for refusal in failed}
        if later:
            at_once = all(_too_many_recipients(refusal) for refusal in later)
            delay = self._retry_delay(number, 0.0 if at_once else None)
            if self._past_lifetime(queued, delay):
                failed.extend(later)
                statuses.add("4.4.7")  # delivery time expired, as for a whole message
            elif not await self._queue_again(queued, later, delay):
                return False
        if failed:
            log.error(
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
            await self._bounce(queued, failure)
        return True

    async def _queue_again(
        self, queued: QueuedMessage, later: tuple[Refusal, ...], delay: float
    ) -> bool:
        """Queue the message for the deferred recipients only; False if the queue cannot."""
        recipients = tuple(refusal.recipient for refusal in later)
        replies = [refusal.reply for refusal in later]
        record = {
            "at": time.time(),
            "result": "deferred",
            "reason": f"the server deferred these recipients of {queued.queue_id} while the "
            f"others took it: {'; '.join(replies)}"[:500],
        }
        try:
            copy = await self._queue.split(queued, recipients, time.time() + delay, record)
        except SpoolError as error:
            log.error(
                "recipients_requeue_failed",
                reason=str(error),
                recipients=list(recipients),
                action="the whole message stays queued and goes to every recipient again "
                "(some receive it twice); free space in the spool",
            )
            return False
        log.warning(
            "recipients_deferred",
            recipients=list(recipients),
            replies=replies,
            new_queue_id=copy,
            retry_in_s=round(delay, 1),
            action="the others received the message; these are tried again as the new queue ID",
        )
        self._schedule(copy, delay, "", len(queued.message))
        return True

    # -- deferring, holding, notifying --------------------------------------------------------

    async def _defer(
        self,
        queued: QueuedMessage,
        number: int,
        reason: str,
        *,
        answer: Answer | None = None,
        retry_after: float | None = None,
        configuration: bool = False,
        code: str = "",
        tenant: str = "",
        outage: str = "",
        parked: bool = False,
    ) -> DeliveryEvent:
        delay = self._retry_delay(number, retry_after)
        if self._past_lifetime(queued, delay):
            status = f"{answer.status} {answer.code}".strip() if answer else code
            failure = Failure(
                queued.envelope.rcpt_tos,
                "4.4.7",
                status or reason,
                f"gave up after {number} attempts: {reason}",
            )
            # Credential and permission problems are the administrator's to fix: held for
            # `queue release`, but the sender is not notified.
            return await self._hold(
                queued,
                number,
                failure,
                answer,
                bounce=not configuration,
                expired=True,
                tenant=tenant,
            )
        details = _details(answer) or ({"code": code} if code else {})
        if outage:  # the record says so: after a restart, a probe goes at once
            details = {**details, "outage": outage}
        if parked:
            # It goes with the probe or the flush when the tenant answers again. The queue
            # keeps `retry_max` as its time, should no probe find the end (a cluster whose
            # nodes all restarted); meanwhile it does not knock on Graph by itself.
            delay = max(delay, self.settings.retry_max)
        next_attempt = time.time() + delay
        noted = f"{reason}; tenant {outage} is in outage: it goes as soon as the tenant answers"
        record = {
            "at": time.time(),
            "result": "deferred",
            "reason": noted if parked else reason,  # (`queue list` shows it)
            **details,
        }
        problem = await self._queue.defer(queued.queue_id, next_attempt, record)
        _history_not_written(problem)
        log.warning(
            "deferred",
            reason=reason,
            retry_in_s=round(delay, 1),
            next_attempt=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(next_attempt)),
            **details,
            **({"waits_for": "the end of the tenant's outage"} if parked else {}),
        )
        self._schedule(queued.queue_id, delay, "", 0)
        event = DeliveryEvent.of(queued.queue_id, "deferred", answer, reason=reason, tenant=tenant)
        return event if answer is not None or not code else replace(event, code=code)

    async def wait_for_outage(self, queued: QueuedMessage, tenant: str) -> None:
        """New mail of a tenant in outage, not tried: it waits in a shared queue for a probe or
        the flush (at most `retry_max`), marked as the outage's like the messages it failed."""
        delay = self.settings.retry_max
        reason = f"not tried: tenant {tenant} is in outage; it goes when the tenant answers again"
        record = {"at": time.time(), "result": "deferred", "reason": reason, "outage": tenant}
        problem = await self._queue.defer(queued.queue_id, time.time() + delay, record)
        _history_not_written(problem)
        log.info("waits_for_outage", tenant=tenant, reason=reason)

    async def _hold(
        self,
        queued: QueuedMessage,
        number: int,
        failure: Failure,
        answer: Answer | None,
        *,
        bounce: bool = True,
        expired: bool = False,
        tenant: str = "",
    ) -> DeliveryEvent:
        details = _details(answer)
        reason: Record = {
            "reason": failure.explanation,
            "graph_message": answer.message if answer and not expired else "",
            "attempts": number,
            "expired": expired,
            **details,
        }
        attempt: Record = {
            "at": time.time(),
            "result": "held",
            "reason": failure.explanation,
            **(details or {"diagnostic": failure.diagnostic}),
        }
        await self._queue.hold(queued.queue_id, reason, attempt=attempt)
        log.error("held", reason=failure.explanation, expired=expired, **details)
        if bounce:
            await self._bounce(queued, failure)
        return DeliveryEvent.of(
            queued.queue_id, "held", answer, reason=failure.explanation, tenant=tenant
        )

    async def _bounce(self, queued: QueuedMessage, failure: Failure) -> None:
        """Queue a notification to the sender, and say so. Never raises: the message itself is
        already where it belongs (held, or delivered to the others)."""
        try:
            notice = await self._bouncer.bounce(queued, failure)
        except Exception as error:  # a bug in building the notification
            log.error(
                "bounce_failed",
                error_type=type(error).__name__,
                where=where(error),
                exc_info=error,
                action="the sender is not notified; the message is held as it should be",
            )
            return
        if notice.queue_id:
            self._schedule(notice.queue_id, 0.0, "", 0)
        log.info(
            "bounce",
            sent=bool(notice.queue_id),
            dsn_queue_id=notice.queue_id or None,
            reason=notice.reason,
        )

    # -- after a bug ----------------------------------------------------------------------------

    async def crashed(
        self, queue_id: str, error: Exception
    ) -> tuple[DeliveryEvent | None, float | None]:
        """An attempt raised what no code path expects (a bug, a message the converter cannot
        read): hold the message with the reason, so it is not tried again and again. If even
        holding fails (a failing disk), it goes back to the queue; failing that, the engine's
        reclaim puts it back later. (The event when it was held, seconds until it is due again
        when it was put back.)"""
        if isinstance(error, SpoolError):
            # The queue itself failed (its database restarting, its disk): not the message's
            # fault, so it is not held. Its lease is given up, and the queue's check of leases
            # nobody holds queues it again (a cluster's next heartbeat, the spool's reclaim);
            # should even that fail, a cluster's lease lapses by itself.
            log.warning(
                "delivery_interrupted",
                reason=str(error),
                action="the message is queued again when the queue answers",
            )
            with contextlib.suppress(SpoolError, OSError):
                await self._queue.abandon(queue_id)
            return None, None
        summary = where(error)
        reason = (
            f"the gateway failed on this message ({type(error).__name__} in {summary}); it is "
            "held so it is not tried again; report it with `queue show`, and `queue release` "
            "it after an upgrade"
        )
        log.error(
            "delivery_crashed",
            error_type=type(error).__name__,
            where=summary,
            action="the message is held; the rest of the queue goes on",
            exc_info=error,
        )
        note: Record = {"reason": reason, "error_type": type(error).__name__, "where": summary}
        try:
            state = await self._queue.state_of(queue_id)
            attempt: Record = {"at": time.time(), "result": "held", "reason": reason}
            held = state in ("active", "queue") and await self._queue.hold(
                queue_id, note, state=state or "active", attempt=attempt
            )
        except Exception as failure:  # noqa: BLE001 - logged; the message is not lost
            log.error(
                "hold_failed",
                error_type=type(failure).__name__,
                action="it goes back to the queue and is tried again",
            )
            return None, await self._put_back(queue_id)
        return (DeliveryEvent(queue_id, "held", reason=reason) if held else None), None

    async def _put_back(self, queue_id: str) -> float | None:
        """Queue a message again after a failure that left it leased, due after the longest
        backoff (that delay), else leave it to the engine's reclaim (None)."""
        delay = self.settings.retry_max
        record: Record = {"at": time.time(), "result": "deferred", "reason": "a failed attempt"}
        try:
            await self._queue.defer(queue_id, time.time() + delay, record)
        except FileNotFoundError:
            return None
        except (OSError, SpoolError) as error:
            with contextlib.suppress(OSError, SpoolError):
                await self._queue.abandon(queue_id)
            log.error(
                "requeue_failed",
                error=error.strerror if isinstance(error, OSError) else str(error),
                action="it is queued again at the next check of leased messages",
            )
            return None
        return delay

    # -- timing -------------------------------------------------------------------------------

    def _retry_delay(self, number: int, given: float | None) -> float:
        """Seconds until the next attempt: `given` (Retry-After) if there is one, else backoff."""
        if given is not None:
            return given
        return backoff_delay(
            number,
            initial=self.settings.retry_initial,
            maximum=self.settings.retry_max,
            rng=self._rng,
        )

    def _past_lifetime(self, queued: QueuedMessage, delay: float) -> bool:
        """Whether waiting `delay` more seconds would keep it beyond `max_queue_lifetime`."""
        age = time.time() - queued.envelope.received_at
        return age + delay > self.settings.max_queue_lifetime


def _history_not_written(problem: str | None) -> None:
    """The queue kept the deferral but not its record (a full spool disk): say so."""
    if problem is not None:
        log.warning(
            "history_not_written",
            error=problem,
            action="the attempt is not in `queue show`; free space in the spool",
        )
