"""Outages of a tenant's service, and the quick recovery after one. Pure: the clock is passed in.

Without this, every message deferred by a 503 outage waits out its own backoff (1 m doubling
to 1 h), so mail arrives many minutes after Graph is back, and while the outage lasts each
message knocks on Graph when its own wait is over. Instead:

- Two attempts in a row that failed for reasons that are not the messages' own (5xx, 408, a
  timeout, no connection), with no answer of the tenant's service between them, start an
  outage of the tenant. One such failure alone is a blip: that message waits its usual
  backoff (and is parked with the others if the outage proves real). A failure is never an
  outage when another request of the tenant was answered after it began: Graph works, and
  the failure is the message's own (its mailbox's 503, say).
- While a tenant is in outage its messages are parked: the deferred ones and those that come
  due (new mail, a backoff that ends). One of them at a time is the probe, and a probe goes
  no sooner than `interval` after the outage began or the last probe failed: at most one
  request per tenant per interval while it lasts.
- The first request of the tenant that is answered (delivered, or any answer that is not an
  outage: Graph is back) ends the outage, and every parked message is due at once; the
  usual per-mailbox limits (four in flight, the sending rate, Retry-After) still pace them.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from enum import Enum

DEFAULT_PROBE_INTERVAL = 10.0  # seconds between probes of a tenant in outage
IN_A_ROW = 2  # failures with no answer between them that make an outage


class Failure(Enum):
    """What an outage-type failure meant."""

    OWN = "own"  # others of the tenant were answered meanwhile: the message's own (backoff)
    BLIP = "blip"  # the first in a row: its usual backoff, or parked if an outage follows
    BEGAN = "began"  # the tenant's outage begins with it: the message is parked
    CONTINUES = "continues"  # the tenant is in outage already (or the probe failed): parked


@dataclass(frozen=True, slots=True)
class Ended:
    """An outage that ended: the messages to try again now."""

    tenant: str
    duration: float  # seconds from the first failure to the answer that ended it
    probes: int  # probes that failed while it lasted
    flush: tuple[str, ...]  # parked queue IDs, oldest first


@dataclass(slots=True)
class _Outage:
    since: float
    next_probe: float
    # Parked queue IDs in the order they were parked (O(1) removal, and O(1) to the front).
    parked: OrderedDict[str, None] = field(default_factory=OrderedDict)
    probe: str | None = None  # the queue ID being tried as the probe
    probes: int = 0


class Outages:
    """The tenants in outage, their parked messages and their probes."""

    def __init__(self, interval: float = DEFAULT_PROBE_INTERVAL) -> None:
        self.interval = interval
        self._outages: dict[str, _Outage] = {}
        self._answered: dict[str, float] = {}  # tenant → when a request was last answered
        self._tenant_of: dict[str, str] = {}  # parked or probing queue ID → its tenant
        # tenant → failures since its last answer not (yet) an outage, and their queue IDs
        self._in_a_row: dict[str, int] = {}
        self._blips: dict[str, dict[str, None]] = {}
        self.probes_total = 0  # probes sent since start (a counter for metrics)

    @property
    def tenants(self) -> list[str]:
        """The tenants in outage now."""
        return list(self._outages)

    def __contains__(self, tenant: str) -> bool:
        return tenant in self._outages

    def parked(self, queue_id: str) -> bool:
        """Whether the message waits for its tenant's outage to end (not the probe)."""
        tenant = self._tenant_of.get(queue_id)
        return tenant is not None and queue_id in self._outages[tenant].parked

    def waiting(self, tenant: str) -> int:
        """Messages parked for `tenant`'s outage."""
        outage = self._outages.get(tenant)
        return len(outage.parked) if outage else 0

    def answered(self, tenant: str, now: float) -> Ended | None:
        """A request of `tenant` was answered with anything but an outage failure: its
        outage, if it had one, is over (what to flush)."""
        self._answered[tenant] = now
        self._blips.pop(tenant, None)
        self._in_a_row.pop(tenant, None)
        outage = self._outages.pop(tenant, None)
        if outage is None:
            return None
        for queue_id in outage.parked:
            self._tenant_of.pop(queue_id, None)
        if outage.probe is not None:
            self._tenant_of.pop(outage.probe, None)
        return Ended(tenant, now - outage.since, outage.probes, tuple(outage.parked))

    def failed(self, tenant: str, queue_id: str, started: float, now: float) -> Failure:
        """`queue_id`'s attempt, begun at `started`, failed for a reason that is not the
        message's own (5xx, timeout, no connection)."""
        outage = self._outages.get(tenant)
        began = outage is None
        if outage is None:
            if self._answered.get(tenant, float("-inf")) > started:
                return Failure.OWN
            blips = self._blips.setdefault(tenant, {})
            blips[queue_id] = None
            self._in_a_row[tenant] = self._in_a_row.get(tenant, 0) + 1
            if self._in_a_row[tenant] < IN_A_ROW:
                return Failure.BLIP
            del self._blips[tenant], self._in_a_row[tenant]
            outage = self._outages[tenant] = _Outage(since=now, next_probe=now + self.interval)
            for earlier in blips:  # waiting their backoff: they go with the flush
                outage.parked[earlier] = None
                self._tenant_of[earlier] = tenant
        if outage.probe == queue_id:
            outage.probe = None
            outage.probes += 1
            outage.next_probe = now + self.interval
        outage.parked[queue_id] = None
        self._tenant_of[queue_id] = tenant
        return Failure.BEGAN if began else Failure.CONTINUES

    def suspect(self, tenant: str, queue_id: str, now: float) -> bool:
        """At start: the message was deferred by an outage of `tenant` before the restart.
        It is parked, and the tenant's first probe goes at once (the outage may be over).
        True when this puts the tenant in outage."""
        outage = self._outages.get(tenant)
        began = outage is None
        if outage is None:
            outage = self._outages[tenant] = _Outage(since=now, next_probe=now)
        if queue_id != outage.probe:
            outage.parked[queue_id] = None
            self._tenant_of[queue_id] = tenant
        return began

    def hold_back(self, tenant: str, queue_id: str, now: float) -> bool:
        """A message of `tenant` is due: True when it must wait for the outage (it is parked),
        False when it may go (no outage; it is the probe; or a probe is due and it becomes
        the probe)."""
        outage = self._outages.get(tenant)
        if outage is None or outage.probe == queue_id:
            return False
        if outage.probe is None and now >= outage.next_probe:
            outage.parked.pop(queue_id, None)
            outage.probe = queue_id
            self.probes_total += 1
            self._tenant_of[queue_id] = tenant
            return False
        outage.parked[queue_id] = None
        self._tenant_of[queue_id] = tenant
        return True

    def next_probe(self, tenant: str) -> float | None:
        """When `tenant`'s next probe may go (None: no outage, or a probe is under way)."""
        outage = self._outages.get(tenant)
        if outage is None or outage.probe is not None:
            return None
        return outage.next_probe

    def take_probe(self, tenant: str, now: float) -> str | None:
        """The parked message to try now as `tenant`'s probe (None: not yet, none parked, or
        a probe is under way)."""
        outage = self._outages.get(tenant)
        if outage is None or outage.probe is not None or now < outage.next_probe:
            return None
        if not outage.parked:
            return None
        queue_id = next(iter(outage.parked))
        del outage.parked[queue_id]
        outage.probe = queue_id
        self.probes_total += 1
        return queue_id

    def probed(self, tenant: str, now: float) -> None:
        """A probe was asked of a shared queue (which picks the message): the next one goes
        no sooner than an interval from now."""
        outage = self._outages.get(tenant)
        if outage is not None:
            outage.probes += 1
            outage.next_probe = now + self.interval
            self.probes_total += 1

    def drop(self, tenant: str) -> None:
        """Forget `tenant`'s outage without a flush (a cluster whose other node flushed)."""
        outage = self._outages.pop(tenant, None)
        for queue_id in outage.parked if outage else ():
            self._tenant_of.pop(queue_id, None)

    def hurry(self, queue_id: str, now: float) -> str | None:
        """Someone asked for the parked message now (`queue retry`): it is the next probe, at
        once unless a probe is under way (then at the next turn: still one at a time, one per
        interval). Its tenant."""
        tenant = self._tenant_of.get(queue_id)
        outage = self._outages.get(tenant) if tenant is not None else None
        if outage is None or queue_id not in outage.parked:
            return None
        outage.parked.move_to_end(queue_id, last=False)
        outage.next_probe = min(outage.next_probe, now)
        return tenant

    def forget(self, queue_id: str, now: float) -> str | None:
        """The message left the queue, or its attempt ended without a request (it was not
        queued any more): a probe's turn passes to another at once. Its tenant, if it had
        one here."""
        tenant = self._tenant_of.pop(queue_id, None)
        outage = self._outages.get(tenant) if tenant is not None else None
        if outage is None:
            return None
        outage.parked.pop(queue_id, None)
        if outage.probe == queue_id:
            outage.probe = None
            outage.next_probe = min(outage.next_probe, now)
        return tenant
