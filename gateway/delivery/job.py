"""The one record the delivery engine keeps per message it knows of, from `submit` (accepted,
recovered at start, queued again by an administrator, or claimed from a shared queue) until it
leaves the queue; and the interface of what decides when a job may run (`Admission`: the
engine's own schedule, gates and budget for one node, or a shared queue's claim for a
cluster)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol


@dataclass(slots=True)
class Job:
    """A message the engine may deliver."""

    queue_id: str
    size: int = 0  # bytes; 0 until known (from the acceptance, or read from its envelope)
    # The mailbox its first route sends as (lower case): None until known, "" when no tenant
    # serves it any more (the attempt then says so).
    mailbox: str | None = None
    tenant: str = ""  # the tenant of its latest attempt


class Ready(NamedTuple):
    """A job whose time has come. A claim from a shared queue says its mailbox and size (it
    is already leased); a local schedule knows only the ID (`mailbox` None)."""

    queue_id: str
    mailbox: str | None = None
    size: int = 0


class Admission(Protocol):
    """When a job may run: its time, its mailbox's limits, room in memory."""

    # True when a shared queue decides what runs (each `next()` is a claim, leased already):
    # the engine then keeps nothing about a message between attempts, since the next one may
    # be any node's. False: the engine's own schedule, which keeps a job per queued message.
    shared: bool

    @property
    def bytes_in_flight(self) -> int: ...

    @property
    def waiting_for_memory(self) -> int: ...

    def due(self, queue_id: str, delay: float = 0.0) -> None:
        """A job is due after `delay` seconds (accepted, deferred, released)."""

    async def next(self) -> Ready:
        """The next job that may be attempted (`ScheduleClosedError` once closed)."""
        ...

    def admit(self, job: Job, now: float) -> bool:
        """May it run now? If not it is parked and comes back through `next()`."""
        ...

    def finished(self, job: Job, *, sent: bool = True) -> None:
        """Its attempt is over: its memory and mailbox slot go to others. `sent=False`: the
        service refused the request, so it does not count against the mailbox's rate."""

    async def throttle(self, mailbox: str, until: float) -> None:
        """No request as `mailbox` before `until` (monotonic clock): Retry-After."""

    def forget(self, queue_id: str) -> None:
        """The job left the queue."""

    async def release_outage(self, tenant: str, queue_ids: Sequence[str]) -> int:
        """`tenant` answers again after an outage: the messages it deferred are due now
        (`queue_ids`: those parked by this node's engine); how many."""
        ...

    async def probe_outage(self, tenant: str) -> bool:
        """A shared queue: one message `tenant`'s outage deferred is due now, as its probe;
        False when none waits. (One node's engine picks its probe among those it parked.)"""
        ...

    def resize(self, limit: int) -> None:
        """A new delivery.max_bytes_in_flight."""

    def close(self) -> None:
        """No job goes any more."""
