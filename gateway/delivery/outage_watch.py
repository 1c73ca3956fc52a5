"""The engine's side of outages: what each attempt's failure means, parking, probes, flushes.

`outages.Outages` is the pure record (which tenants are in outage, what they parked, when the
next probe may go). This adapter puts it to work in the engine: it reads each attempt's
outcome, parks the messages of a tenant in outage, sets the timer for its probe and, at the
first answer, makes the parked messages due again.

One node parks them in memory (and the deferral's record in the queue says it was an outage,
so a restart probes at once instead of waiting out the backoff). In a cluster the shared queue
keeps no job here between attempts, so the database holds the parking: an outage deferral is
due only after `retry_max`, each node's probe makes one such message of the tenant due now,
and each node's flush makes them all due now — any node then takes them, under the limits the
database keeps for all nodes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import structlog

from gateway.delivery.attempt import Failed, Outcome, not_the_message
from gateway.delivery.disposition import Disposition
from gateway.delivery.job import Admission
from gateway.delivery.outages import Ended, Failure, Outages
from gateway.errors import SpoolError
from gateway.queue.model import Due, QueuedMessage
from gateway.routing import Router

log = structlog.get_logger("gateway.delivery")


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one attempt's outcome means for its tenant's outage."""

    outage: str = ""  # the tenant whose outage deferred it ("" if none): the record says so
    parked: bool = False  # it waits for the probe or the flush, not its own backoff
    ended: Ended | None = None  # the outage this answer ended: flush after the disposition


class OutageWatch:
    """Outages of every tenant, for one engine."""

    def __init__(
        self,
        *,
        admission: Admission,
        disposition: Disposition,
        router: Callable[[], Router],
        queued: Callable[[str], bool],
        probe_interval: float,
        retry_initial: float,
    ) -> None:
        self._admission = admission
        self._disposition = disposition
        self._router = router
        self._queued = queued  # does this node's engine still know the queue ID?
        # A probe never waits longer than a message's first retry would have.
        self._probe_interval = probe_interval
        self._outages = Outages(min(probe_interval, retry_initial))
        self._probes: dict[str, asyncio.TimerHandle] = {}  # tenant → its next probe
        self._tasks: set[asyncio.Task[None]] = set()
        # A cluster: tenants answered since this node started. The first answer of each also
        # releases what an outage deferred before (every node may have restarted meanwhile).
        self._answered_since_start: set[str] = set()
        self._stopping = False

    def resize(self, retry_initial: float) -> None:
        self._outages.interval = min(self._probe_interval, retry_initial)

    def gauges(self) -> dict[str, int]:
        return {
            "tenants_in_outage": len(self._outages.tenants),
            "outage_probes": self._outages.probes_total,
        }

    @property
    def active(self) -> bool:
        """Some tenant is in outage now."""
        return bool(self._outages.tenants)

    def parked(self, queue_id: str) -> bool:
        return self._outages.parked(queue_id)

    def hurry(self, queue_id: str) -> None:
        """A parked message asked for now (queue retry): it is the next probe, at once."""
        tenant = self._outages.hurry(queue_id, time.monotonic())
        if tenant is not None:
            self._arm(tenant)

    def unpark(self, queue_id: str) -> None:
        """The message waits for no outage any more; if it was the probe, another goes."""
        tenant = self._outages.forget(queue_id, time.monotonic())
        if tenant is not None:
            self._arm(tenant)

    def suspect(self, found: Iterable[Due]) -> None:
        """At start: messages whose last deferral was an outage of their tenant wait for a
        probe, which goes at once, instead of each waiting out its backoff (and each knocking
        on Graph then)."""
        now = time.monotonic()
        suspected: dict[str, int] = {}
        for due in found:
            if due.outage:
                self._outages.suspect(due.outage, due.queue_id, now)
                suspected[due.outage] = suspected.get(due.outage, 0) + 1
        for tenant, count in suspected.items():
            log.warning(
                "graph_outage_suspected",
                tenant=tenant,
                waiting=count,
                action="these were deferred by an outage before the restart; one is tried "
                "now, and all of them go as soon as the tenant answers",
            )
            self._arm(tenant)

    def holds_back(self, tenant: str, queue_id: str) -> bool:
        """One node: a due message of a tenant in outage is parked (True), unless it is (or
        becomes) the probe."""
        if not self._outages.hold_back(tenant, queue_id, time.monotonic()):
            return False
        self._arm(tenant)
        return True

    async def new_mail_waits(self, queued: QueuedMessage) -> bool:
        """A cluster: new mail claimed for a tenant this node knows in outage waits in the
        database, untried (unless it is this node's probe). Messages tried before go: a
        probe or a flush made them due, or their own backoff ended."""
        if not self._admission.shared or queued.attempts or not self._outages.tenants:
            return False
        routes = self._router().routes_for(queued.envelope)
        tenant = routes[0].tenant.name if routes else ""
        if not tenant or not self._outages.hold_back(tenant, queued.queue_id, time.monotonic()):
            return False
        await self._disposition.wait_for_outage(queued, tenant)
        return True

    def judge(self, outcome: Outcome, tenant: str, queue_id: str, started: float) -> Verdict:
        """What the attempt of `queue_id` for `tenant`, begun at `started`, tells of its
        tenant's service: a failure that may begin (or continue) an outage, or an answer."""
        now = time.monotonic()
        if not_the_message(outcome):
            failure = self._outages.failed(tenant, queue_id, started, now)
            if failure is Failure.BEGAN:
                log.warning(
                    "graph_outage_detected",
                    tenant=tenant,
                    probe_interval_s=self._outages.interval,
                    action="its messages wait; one is tried every "
                    f"{self._outages.interval:g} s, and all go as soon as it answers",
                )
            return Verdict(
                outage="" if failure is Failure.OWN else tenant,
                parked=failure in (Failure.BEGAN, Failure.CONTINUES),
            )
        if isinstance(outcome, Failed) and outcome.configuration:
            return Verdict()  # our own setup failed: it says nothing of the service
        return Verdict(ended=self._first_answer(tenant, self._outages.answered(tenant, now)))

    async def settle(self, tenant: str, verdict: Verdict) -> None:
        """After the attempt's disposition: flush what an ended outage parked, and set the
        tenant's next probe."""
        if verdict.ended is not None:
            await self._flush(verdict.ended)
        self._arm(tenant)

    def close(self) -> None:
        """No more probes (the engine drains)."""
        self._stopping = True
        for handle in self._probes.values():
            handle.cancel()
        self._probes.clear()

    async def stop(self) -> None:
        """No more probes; those under way are cancelled and waited for."""
        self.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _first_answer(self, tenant: str, ended: Ended | None) -> Ended | None:
        """A cluster: the tenant's first answer since this node started also releases the
        messages an outage deferred in the database before then (none, almost always)."""
        if not self._admission.shared or tenant in self._answered_since_start:
            return ended
        self._answered_since_start.add(tenant)
        return ended or Ended(tenant, 0.0, 0, ())

    async def _flush(self, ended: Ended) -> None:
        """A tenant answers again: every message its outage parked is due now (one node's are
        scheduled here; a cluster's are made due in the database, for every node)."""
        try:
            flushed = await self._admission.release_outage(ended.tenant, ended.flush)
        except SpoolError as error:
            flushed = 0
            log.error(
                "outage_flush_failed",
                tenant=ended.tenant,
                reason=str(error),
                action="the messages it deferred go at their own retry time",
            )
        if ended.duration or flushed:  # (else a cluster's first answer found nothing)
            log.warning(
                "graph_outage_ended",
                tenant=ended.tenant,
                duration_s=round(ended.duration, 1),
                probes=ended.probes,
                flushed=flushed,
            )

    def _arm(self, tenant: str) -> None:
        """Set the timer for `tenant`'s next probe (none when it needs none)."""
        handle = self._probes.pop(tenant, None)
        if handle is not None:
            handle.cancel()
        when = self._outages.next_probe(tenant)
        if self._stopping or when is None:
            return
        if not self._admission.shared and not self._outages.waiting(tenant):
            return  # the next message of the tenant that comes due is the probe
        delay = max(0.0, when - time.monotonic())
        loop = asyncio.get_running_loop()
        self._probes[tenant] = loop.call_later(delay, self._probe, tenant)

    def _probe(self, tenant: str) -> None:
        self._probes.pop(tenant, None)
        if self._admission.shared:
            self._outages.probed(tenant, time.monotonic())
            task = asyncio.get_running_loop().create_task(self._probe_shared(tenant))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        now = time.monotonic()
        while (queue_id := self._outages.take_probe(tenant, now)) is not None:
            if self._queued(queue_id):
                log.info("outage_probe", tenant=tenant, probe=queue_id)
                self._admission.due(queue_id)
                return
            self._outages.forget(queue_id, now)  # it left the queue meanwhile: the next one

    async def _probe_shared(self, tenant: str) -> None:
        """A cluster's probe: one of the tenant's outage deferrals is made due now."""
        try:
            found = await self._admission.probe_outage(tenant)
        except SpoolError as error:
            log.warning("outage_probe_failed", tenant=tenant, reason=str(error))
            found = True  # the database is away: try again at the next interval
        if found:
            log.info("outage_probe", tenant=tenant)
        else:  # none left waiting (another node's flush took them): nothing to probe for
            self._outages.drop(tenant)
        self._arm(tenant)
