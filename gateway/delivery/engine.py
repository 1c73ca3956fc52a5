"""The delivery engine: workers that take queued messages to their transport.

One message's way: `submit` makes it a `Job` and due; a worker takes it when its time has come
(`admission`: schedule, mailbox gates, memory budget), runs one attempt (`attempt`: lease,
routes, transport, failover) and ends it (`disposition`: delivered, deferred, held, bounced —
a queue transition and a typed event for the observers). Whatever happens, even a bug, the
message ends in one state of the queue; the engine talks to the queue and the transports
only through their interfaces (`queue.base.Queue`, `transport.Transport`).

Outages (`outage_watch`): when a tenant's requests fail for reasons that are not the
messages' own, its messages are parked and one probe per interval finds the end; the first
answer flushes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Iterable

import structlog

from gateway.config import DeliverySettings
from gateway.delivery.admission import LocalAdmission
from gateway.delivery.attempt import Attempt, Failed, Tried
from gateway.delivery.disposition import Disposition, where
from gateway.delivery.events import DeliveryEvent, Observer
from gateway.delivery.job import Admission, Job
from gateway.delivery.outage_watch import OutageWatch
from gateway.delivery.outages import DEFAULT_PROBE_INTERVAL
from gateway.delivery.schedule import ScheduleClosedError
from gateway.errors import CorruptRecord, SpoolError
from gateway.queue.base import Queue
from gateway.queue.model import Due
from gateway.routing import Route, Router
from gateway.transport import Transport

__all__ = ["DeliveryEngine", "DeliveryEvent", "Observer"]

log = structlog.get_logger("gateway.delivery")
RECLAIM_INTERVAL = 30.0  # seconds between checks for leased messages no worker holds


class DeliveryEngine:
    """Delivery workers sharing one schedule."""

    def __init__(
        self,
        *,
        queue: Queue,
        router: Callable[[], Router],
        transport_for: Callable[[Route], Transport],
        settings: DeliverySettings,
        hostname: str = "",
        rng: random.Random | None = None,
        admission: Admission | None = None,
        probe_interval: float = DEFAULT_PROBE_INTERVAL,
    ) -> None:
        self._queue = queue
        self._router = router
        self._settings = settings
        self._admission = admission or LocalAdmission(settings)
        self._attempt = Attempt(queue, router, transport_for, hostname)
        self._disposition = Disposition(
            queue=queue,
            settings=settings,
            hostname=hostname,
            schedule=self.submit,
            throttle=self._admission.throttle,
            rng=rng,
        )
        self._jobs: dict[str, Job] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self._stopped = asyncio.Event()
        self._outages = OutageWatch(
            admission=self._admission,
            disposition=self._disposition,
            router=router,
            queued=self._jobs.__contains__,
            probe_interval=probe_interval,
            retry_initial=settings.retry_initial,
        )
        self.observers: list[Observer] = []

    def update_settings(self, settings: DeliverySettings) -> list[str]:
        """Take new retry, lifetime, postmaster and memory settings; what needs a restart."""
        old = self._settings
        fixed = [
            name
            for name in ("concurrency", "max_per_mailbox", "mailbox_rate")
            if getattr(old, name) != getattr(settings, name)
        ]
        self._settings = settings
        self._outages.resize(settings.retry_initial)
        self._disposition.update(settings)
        self._admission.resize(settings.max_bytes_in_flight)
        return [f"delivery.{name}" for name in fixed]

    def gauges(self) -> dict[str, int]:
        """Deliveries under way, their total size and the messages waiting for room."""
        return {
            "in_flight": self._busy,
            "bytes_in_flight": self._admission.bytes_in_flight,
            "waiting_for_memory": self._admission.waiting_for_memory,
            **self._outages.gauges(),
        }

    @property
    def depth(self) -> int:
        """Messages queued or being delivered."""
        return len(self._jobs)

    def submit(self, queue_id: str, delay: float = 0.0, mailbox: str = "", size: int = 0) -> None:
        """Make a queued message due after `delay` seconds (optionally saying which mailbox it
        is sent as and how many bytes it has)."""
        if self._admission.shared:  # the shared queue knows it; wake the claimers then
            self._admission.due(queue_id, delay)
            return
        job = self._jobs.get(queue_id)
        if job is None:
            job = self._jobs[queue_id] = Job(queue_id)
        if mailbox:
            job.mailbox = mailbox.lower()
        if size:
            job.size = size
        if not self._outages.parked(queue_id):
            self._admission.due(queue_id, delay)
        elif delay <= 0:  # asked for now (queue retry): it is the next probe, at once
            self._outages.hurry(queue_id)
        # (else a deferral of a parked message: it goes with the probe or the flush)

    def forget(self, queue_id: str) -> None:
        """The message left the queue (delivered, held, deleted): drop what we know of it."""
        self._jobs.pop(queue_id, None)
        self._admission.forget(queue_id)
        self._outages.unpark(queue_id)

    def recover(self, found: Iterable[Due]) -> None:
        """At start, after `submit`ting what the queue found: messages whose last deferral was
        an outage of their tenant (the queue read that as it recovered) wait for a probe."""
        self._outages.suspect(found)

    def start(self) -> None:
        """Start the workers and the check for leases nobody holds."""
        self._workers = [
            asyncio.create_task(self._work(), name=f"delivery-{index}")
            for index in range(self._settings.concurrency)
        ]
        self._workers.append(asyncio.create_task(self._reclaim(), name="delivery-reclaim"))

    async def drain(self, timeout: float) -> bool:
        """Take no new work, let attempts under way finish; False if some did not in time.

        Unfinished attempts are cancelled; their messages stay leased in the queue and are
        queued again at the next start.
        """
        self._stopping = True
        self._stopped.set()
        self._admission.close()
        self._outages.close()
        finished = self._idle.is_set()
        if not finished:
            try:
                await asyncio.wait_for(self._idle.wait(), timeout)
                finished = True
            except TimeoutError:
                log.warning("delivery_drain_timeout", in_flight=self._busy, timeout=timeout)
        await self._outages.stop()
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        return finished

    async def _work(self) -> None:
        """One worker: a due job at a time, for as long as the engine runs. Whatever fails (a
        bug in the admission, a queue that fails even to put a message back), the worker
        lives on: the message's lease brings it back."""
        while not self._stopping:
            try:
                await self._next()
            except ScheduleClosedError:
                return
            except Exception as error:  # logged; the worker must not die
                log.error(
                    "delivery_worker_error",
                    error_type=type(error).__name__,
                    where=where(error),
                    action="the worker goes on after a second; a message it held is queued "
                    "again when its lease is checked",
                    exc_info=error,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), 1.0)

    async def _next(self) -> None:
        """Wait for the next due job and take it through one attempt."""
        ready = await self._admission.next()
        job = self._jobs.get(ready.queue_id)
        if ready.mailbox is not None:  # claimed from a shared queue: leased already
            job = job or self._jobs.setdefault(ready.queue_id, Job(ready.queue_id))
            job.mailbox, job.size = ready.mailbox, ready.size
        if job is None:
            return
        parked = await self._handle(job)
        if self._admission.shared and not parked:
            # A claim lives for one attempt: the shared queue has the message from here (any
            # node may take it next), so nothing is kept about it here.
            self._jobs.pop(job.queue_id, None)

    async def _handle(self, job: Job) -> bool:
        """One due job: admitted or parked, attempted, ended; any bug ends in a hold. True
        when it was parked (it comes back through the admission)."""
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(queue_id=job.queue_id)
        admitted = False
        event: DeliveryEvent | None = None
        retry_in: float | None = None
        try:
            if job.mailbox is None and not await self._learn(job):
                self.forget(job.queue_id)  # deleted or held by an administrator meanwhile
                return False
            if await self._waits_for_outage(job):
                return True
            if not self._admission.admit(job, time.monotonic()):
                return True
            admitted = True
            self._busy += 1
            self._idle.clear()
            event = await self._deliver(job)
        except Exception as error:  # noqa: BLE001 - any bug: the message ends held
            self._outages.unpark(job.queue_id)
            event, retry_in = await self._disposition.crashed(job.queue_id, error)
            if event is None and retry_in is not None:
                self._admission.due(job.queue_id, retry_in)
            elif event is None:
                self.forget(job.queue_id)
        finally:
            if admitted:
                self._admission.finished(job, sent=not _refused(event))
                self._busy -= 1
                if self._busy == 0:
                    self._idle.set()
            structlog.contextvars.clear_contextvars()
        if event is not None:
            for observer in self.observers:
                observer(event)
            if event.result != "deferred":
                self.forget(job.queue_id)
        return False

    async def _learn(self, job: Job) -> bool:
        """Read a job's size and first mailbox from its envelope; False if it is not queued.
        (A record that is not whole is left for the lease, which sets it aside.)"""
        try:
            envelope = await self._queue.peek(job.queue_id)
        except CorruptRecord:
            job.mailbox = ""
            return True
        if envelope is None:
            return False
        job.size = job.size or envelope.size
        routes = self._router().routes_for(envelope)
        job.mailbox = routes[0].mailbox.lower() if routes else ""
        job.tenant = routes[0].tenant.name if routes else ""
        return True

    async def _waits_for_outage(self, job: Job) -> bool:
        """One node: a due message of a tenant in outage is parked, unless it is (or becomes)
        the probe. (A cluster's claims all go: the database parks its outage deferrals.)"""
        if self._admission.shared or not self._outages.active:
            return False
        if not job.tenant and not await self._learn(job):
            return False  # not queued any more: the lease says so
        return self._outages.holds_back(job.tenant, job.queue_id)

    async def _deliver(self, job: Job) -> DeliveryEvent | None:
        queued = await self._attempt.lease(job.queue_id)
        if queued is None:
            self.forget(job.queue_id)
            return None
        try:
            if await self._outages.new_mail_waits(queued):
                return None  # not tried: no attempt to tell of
            started, before = time.monotonic(), job.tenant
            outcome = await self._attempt.run(queued)
            tenant = outcome.route.tenant.name if outcome.route is not None else ""
            if tenant != before:  # routed elsewhere since (a reload): not parked as before
                self._outages.unpark(job.queue_id)
            if isinstance(outcome, Failed) and outcome.route is None:
                return await self._disposition.failed(outcome)  # no tenant serves it
            job.tenant = tenant
            verdict = self._outages.judge(outcome, tenant, job.queue_id, started)
            if isinstance(outcome, Tried):
                event = await self._disposition.answered(
                    outcome, outage=verdict.outage, parked=verdict.parked
                )
            else:
                event = await self._disposition.failed(
                    outcome, outage=verdict.outage, parked=verdict.parked
                )
            await self._outages.settle(tenant, verdict)
            return event
        finally:
            queued.close()  # a large message is read from the queue: let go of it

    async def _reclaim(self) -> None:
        """Every `RECLAIM_INTERVAL`: messages whose lease nobody holds (a failure that could
        not even put them back) are queued again, without a restart."""
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), RECLAIM_INTERVAL)
            if self._stopping:
                return
            try:
                found = await self._queue.reclaim()
            except OSError as error:
                log.error("reclaim_failed", error=error.strerror)
                continue
            except SpoolError as error:  # a cluster's database is away: the next round
                log.warning("reclaim_failed", error=str(error))
                continue
            for queue_id in found:
                log.warning(
                    "requeued",
                    queue_id=queue_id,
                    reason="it was left leased by a failed delivery",
                )
                self.submit(queue_id)


def _refused(event: DeliveryEvent | None) -> bool:
    """The service answered the attempt with an error: nothing was sent (a time-out or a lost
    connection may have sent it, so those count)."""
    return event is not None and event.status is not None and event.status >= 400
