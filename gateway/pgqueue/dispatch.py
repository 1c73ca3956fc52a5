"""When a job may run, in a cluster: claimed from the shared queue, where the per-mailbox limits
hold for all nodes together, and the memory budget kept by this node.

A worker asks the database for the next message this node may deliver now (`sgg_claim`: due,
its mailbox under four in flight on all nodes, past its paced slot and any Retry-After window,
no bigger than the room this node has in memory). When there is none it waits — for a
notification (a message committed, deferred or released anywhere, a delivery ended) or until
the earliest time something becomes claimable — never polling faster than that. A message
accepted on any node is taken by a free worker on any node within a notification's latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Coroutine, Sequence
from typing import Any

import structlog

from gateway.config import DeliverySettings
from gateway.delivery.budget import SMALL, SizeBudget
from gateway.delivery.job import Job, Ready
from gateway.delivery.schedule import ScheduleClosedError
from gateway.errors import QueueRefused, SpoolError
from gateway.pgqueue.queue import PgQueue

log = structlog.get_logger("gateway.delivery")
SWEEP = 10.0  # seconds a worker waits at most without a notification (a safety net)
RACE = 0.05  # seconds before claiming again what another claim had locked a moment ago
UNLIMITED = 2**62


class ClusterAdmission:
    """The `Admission` of a node in a cluster."""

    shared = True

    def __init__(self, queue: PgQueue, settings: DeliverySettings) -> None:
        self._queue = queue
        self._budget = SizeBudget(settings.max_bytes_in_flight)
        self._per_mailbox = settings.max_per_mailbox
        self._rate = settings.mailbox_rate  # a minute's claims per mailbox, for all nodes
        self._wake = asyncio.Event()
        self._resumed: deque[str] = deque()  # jobs that waited for memory and may go now
        self._claimed_at: dict[str, tuple[str, Any]] = {}  # claims with a place in a minute
        self._closed = False
        self._last_refusal = ("", 0.0)
        self._tasks: set[asyncio.Task[None]] = set()
        queue.on_wake(self._wake.set)

    @property
    def bytes_in_flight(self) -> int:
        return self._budget.used

    @property
    def waiting_for_memory(self) -> int:
        return self._budget.waiting

    def due(self, queue_id: str, delay: float = 0.0) -> None:
        """The database knows when it is due; wake the claimers then."""
        if delay <= 0:
            self._wake.set()
        else:
            asyncio.get_running_loop().call_later(delay, self._wake.set)

    async def next(self) -> Ready:
        while True:
            if self._closed:
                raise ScheduleClosedError
            if self._resumed:
                return Ready(self._resumed.popleft())
            self._wake.clear()
            wait = SWEEP
            try:
                room = self._room()
                claim = await self._queue.cluster.claim(room, SMALL, self._per_mailbox, self._rate)
                if claim is not None:
                    if claim.mailbox and self._rate:
                        self._claimed_at[claim.queue_id] = (claim.mailbox, claim.claimed_at)
                    return Ready(claim.queue_id, claim.mailbox, claim.size)
                upcoming = await self._queue.cluster.next_wake(room, SMALL, self._per_mailbox)
                if upcoming is not None:
                    wait = min(SWEEP, max(upcoming, RACE))
            except QueueRefused as error:  # reached, but the claim fails: say so, and retry
                wait = 1.0
                self._refused(str(error))
            except SpoolError:
                wait = 1.0  # the database is away: the pool reconnects; try again soon
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    def _refused(self, problem: str) -> None:
        """A claim the database refused: one line a minute while it lasts (a lost race is
        one line and over; a schema another version changed, or revoked rights, last)."""
        now = time.monotonic()
        if problem != self._last_refusal[0] or now - self._last_refusal[1] >= 60:
            self._last_refusal = (problem, now)
            log.error(
                "claim_failed",
                reason=problem,
                action="nothing is delivered by this node while it lasts; check the role's "
                "rights and that every node runs the same version (`db status`)",
            )

    def _room(self) -> int:
        """The largest message this node may take now (any, when none is in delivery)."""
        used = self._budget.used
        return UNLIMITED if used == 0 else max(0, self._budget.limit - used)

    def admit(self, job: Job, now: float) -> bool:
        if self._budget.take(job.queue_id, job.size):
            return True
        log.info(
            "delivery_waits_for_memory",
            queue_id=job.queue_id,
            size=job.size,
            bytes_in_flight=self._budget.used,
            max_bytes_in_flight=self._budget.limit,
            action="it goes when deliveries under way finish (its lease is kept meanwhile); "
            "raise delivery.max_bytes_in_flight if memory allows",
        )
        return False

    def finished(self, job: Job, *, sent: bool = True) -> None:
        claimed = self._claimed_at.pop(job.queue_id, None)
        if claimed is not None and not sent:
            self._spawn(self._unsent(*claimed))
        self._resume(self._budget.give_back(job.queue_id))
        self._wake.set()  # room in memory again, and its mailbox's slot is free

    async def throttle(self, mailbox: str, until: float) -> None:
        seconds = max(0.0, until - time.monotonic())
        await self._block(mailbox, seconds)  # in the database before the deferral commits

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _unsent(self, mailbox: str, claimed_at: Any) -> None:
        with contextlib.suppress(SpoolError):  # at worst the minute counts a refused request
            await self._queue.cluster.unsent(mailbox, claimed_at, self._rate)
        self._wake.set()

    async def _block(self, mailbox: str, seconds: float) -> None:
        try:
            await self._queue.cluster.block(mailbox, seconds)
        except SpoolError as error:
            log.warning(
                "throttle_not_shared",
                mailbox=mailbox,
                reason=str(error),
                action="the other nodes may send as it before Retry-After has passed",
            )

    def forget(self, queue_id: str) -> None:
        self._claimed_at.pop(queue_id, None)
        self._resume(self._budget.give_back(queue_id))

    async def release_outage(self, tenant: str, queue_ids: Sequence[str]) -> int:
        """Every message `tenant`'s outage deferred, on any node, is due now: any node's
        workers take them, under the limits the database keeps for all nodes."""
        return await self._queue.release_outage(tenant)

    async def probe_outage(self, tenant: str) -> bool:
        """The earliest message `tenant`'s outage deferred is due now: this node's probe."""
        return await self._queue.probe_outage(tenant)

    def resize(self, limit: int) -> None:
        self._resume(self._budget.resize(limit))

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    def _resume(self, queue_ids: list[str]) -> None:
        if not self._closed and queue_ids:
            self._resumed.extend(queue_ids)
            self._wake.set()
