"""When a job may run: its time has come (the schedule), its mailbox may take another request
(Retry-After windows, pacing, at most four in flight: the gates), and there is room in memory
for it (the size budget).

A job that is due but must wait is parked where it waits — in the schedule until a time, in
its mailbox's line, or in the budget's line — and comes back through `next()` when it may go;
a worker never sleeps holding it.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from gateway.config import DeliverySettings
from gateway.delivery.budget import SizeBudget
from gateway.delivery.job import Job, Ready
from gateway.delivery.mailboxes import Admit, MailboxGates, WaitUntil
from gateway.delivery.schedule import Schedule

log = structlog.get_logger("gateway.delivery")


class LocalAdmission:
    """The schedule, the mailbox gates and the memory budget of one engine (one node)."""

    shared = False

    def __init__(self, settings: DeliverySettings) -> None:
        self._schedule = Schedule()
        self._gates = MailboxGates(
            max_in_flight=settings.max_per_mailbox, rate_per_minute=settings.mailbox_rate
        )
        self._budget = SizeBudget(settings.max_bytes_in_flight)
        self._closed = False

    @property
    def bytes_in_flight(self) -> int:
        """Bytes of the messages being delivered (those counted by the budget)."""
        return self._budget.used

    @property
    def waiting_for_memory(self) -> int:
        """Jobs in line for room in memory."""
        return self._budget.waiting

    @property
    def memory_limit(self) -> int:
        """delivery.max_bytes_in_flight."""
        return self._budget.limit

    def due(self, queue_id: str, delay: float = 0.0) -> None:
        """Make a job due after `delay` seconds."""
        self._schedule.add(queue_id, delay)

    async def next(self) -> Ready:
        """The next due job (`ScheduleClosedError` once closed)."""
        return Ready(await self._schedule.next())

    def admit(self, job: Job, now: float) -> bool:
        """May `job` run now? If not, it is parked and comes back through `next()` when it may
        (at its time, when its mailbox frees a slot, when memory is given back)."""
        mailbox = job.mailbox or ""
        if mailbox:
            decision = self._gates.decide(job.queue_id, mailbox, now)
            if not isinstance(decision, Admit):
                self._give_back(job.queue_id)  # room reserved for it goes to others meanwhile
                if isinstance(decision, WaitUntil):
                    self._schedule.add(job.queue_id, decision.when - now)
                return False  # else in its mailbox's line: `finished` hands it back
        if not self._budget.take(job.queue_id, job.size):
            log.info(
                "delivery_waits_for_memory",
                queue_id=job.queue_id,
                size=job.size,
                bytes_in_flight=self._budget.used,
                max_bytes_in_flight=self._budget.limit,
                action="it goes when deliveries under way finish; "
                "raise delivery.max_bytes_in_flight if memory allows",
            )
            self._release_mailbox(mailbox)  # its mailbox slot goes to others meanwhile
            return False
        return True

    def finished(self, job: Job, *, sent: bool = True) -> None:
        """An admitted job's attempt is over: its memory and its mailbox slot go to others
        (and, when the service refused it, its place in the mailbox's minute)."""
        self._gates.settle(job.queue_id, sent=sent)
        self._give_back(job.queue_id)
        self._release_mailbox(job.mailbox or "")

    async def throttle(self, mailbox: str, until: float) -> None:
        """Graph said `Retry-After`: no request as `mailbox` before `until`."""
        self._gates.block(mailbox, until)

    def forget(self, queue_id: str) -> None:
        """The job left the queue: whatever it had reserved goes to others."""
        self._gates.forget(queue_id)
        self._give_back(queue_id)

    async def release_outage(self, tenant: str, queue_ids: Sequence[str]) -> int:
        """The jobs an outage of `tenant` parked are due now; their mailbox gates pace them."""
        if self._closed:
            return 0
        for queue_id in queue_ids:
            self._schedule.add(queue_id)
        return len(queue_ids)

    async def probe_outage(self, tenant: str) -> bool:
        """Not asked of one node: the engine picks the probe among the jobs it parked."""
        return False

    def resize(self, limit: int) -> None:
        """A new delivery.max_bytes_in_flight, at once."""
        self._resume(self._budget.resize(limit))

    def close(self) -> None:
        """No job goes any more; workers waiting in `next()` stop."""
        self._closed = True
        self._schedule.close()

    def _give_back(self, queue_id: str) -> None:
        self._resume(self._budget.give_back(queue_id))

    def _release_mailbox(self, mailbox: str) -> None:
        if mailbox:
            waiting = self._gates.release(mailbox)
            if waiting is not None and not self._closed:
                self._schedule.add(waiting)

    def _resume(self, queue_ids: list[str]) -> None:
        if not self._closed:
            for queue_id in queue_ids:
                self._schedule.add(queue_id)
