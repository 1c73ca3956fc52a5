"""Per-mailbox pacing, the way Exchange Online wants it.

Graph allows four concurrent requests per mailbox, Exchange sends 30 messages a minute per
mailbox, and a 429's `Retry-After` means no request for that mailbox until it has passed. This
module decides, for one message about to be sent as one mailbox, whether it may go now. Pure:
the clock is passed in.

- `blocked`: the mailbox is in a `Retry-After` window; try again at its end.
- pacing: at most `rate` messages in any minute, as Exchange counts it. Each message reserves
  a slot: at once while the mailbox has sent fewer than `rate` in the last minute, else a
  minute after the slot `rate` places before it. So a scanner's burst of five goes at once,
  mail held back by an outage goes as soon as Graph is back, and a burst of 500 queues in
  order, `rate` a minute, each message waiting for exactly its slot instead of all of them
  waking up whenever one frees. A request the service refused (an error answer: nothing was
  sent) gives its slot back.
- concurrency: at most `max_in_flight` at once; the rest wait in line and are handed back one by
  one as requests finish.
"""

from __future__ import annotations

import contextlib
from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Admit:
    """Send now; call `MailboxGates.release` when the request has finished."""


@dataclass(frozen=True, slots=True)
class WaitUntil:
    """Try again at `when` (clock time)."""

    when: float
    reason: str


@dataclass(frozen=True, slots=True)
class Queued:
    """The mailbox has its maximum in flight; the ID comes back from `release`."""


Decision = Admit | WaitUntil | Queued


WINDOW = 60.0  # seconds: Exchange's sending limit is so many messages a minute


@dataclass
class _Mailbox:
    in_flight: int = 0
    blocked_until: float = 0.0
    slots: deque[float] = field(default_factory=deque)  # the latest `rate` slots, in order
    waiting: deque[str] = field(default_factory=deque)
    waiting_ids: set[str] = field(default_factory=set)  # O(1) membership for long lines


class MailboxGates:
    """Concurrency, pacing and Retry-After windows for every sending mailbox."""

    def __init__(self, *, max_in_flight: int, rate_per_minute: int) -> None:
        self._max = max_in_flight
        self._rate = max(0, rate_per_minute)
        self._mailboxes: dict[str, _Mailbox] = {}
        self._reserved: dict[str, float] = {}
        self._granted: dict[str, tuple[str, float]] = {}  # admitted: its mailbox and slot

    def _get(self, mailbox: str) -> _Mailbox:
        key = mailbox.lower()
        state = self._mailboxes.get(key)
        if state is None:
            state = self._mailboxes[key] = _Mailbox()
        return state

    def decide(self, queue_id: str, mailbox: str, now: float) -> Decision:
        """May `queue_id` be sent as `mailbox` at `now`?"""
        state = self._get(mailbox)
        if now < state.blocked_until:
            return WaitUntil(state.blocked_until, "mailbox throttled by Graph (Retry-After)")
        if self._rate:
            slot = self._reserved.get(queue_id)
            if slot is None:
                slot = self._reserve(state, now)
                self._reserved[queue_id] = slot
            if slot > now:
                return WaitUntil(slot, "mailbox sending rate")
        if state.in_flight >= self._max:
            if queue_id not in state.waiting_ids:
                state.waiting.append(queue_id)
                state.waiting_ids.add(queue_id)
            return Queued()
        slot = self._reserved.pop(queue_id, None)
        if slot is not None:
            self._granted[queue_id] = (mailbox.lower(), slot)
        state.in_flight += 1
        return Admit()

    def _reserve(self, state: _Mailbox, now: float) -> float:
        """The next slot: now, unless `rate` slots fall in the minute before it."""
        slots = state.slots
        slot = now if len(slots) < self._rate else max(now, slots[0] + WINDOW)
        slots.append(slot)
        while len(slots) > self._rate:
            slots.popleft()
        return slot

    def release(self, mailbox: str) -> str | None:
        """A request as `mailbox` finished; the next waiting queue ID, if any, to submit."""
        state = self._get(mailbox)
        state.in_flight = max(0, state.in_flight - 1)
        if not state.waiting:
            return None
        queue_id = state.waiting.popleft()
        state.waiting_ids.discard(queue_id)
        return queue_id

    def settle(self, queue_id: str, *, sent: bool) -> None:
        """An admitted message's request is over. `sent=False`: the service refused it (an
        error answer), so nothing was sent and its slot does not count against the minute."""
        granted = self._granted.pop(queue_id, None)
        if granted is None or sent:
            return
        mailbox, slot = granted
        with contextlib.suppress(ValueError):  # already out of the window's latest slots
            self._get(mailbox).slots.remove(slot)

    def block(self, mailbox: str, until: float) -> None:
        """Graph said `Retry-After`: no request as `mailbox` before `until`."""
        state = self._get(mailbox)
        state.blocked_until = max(state.blocked_until, until)

    def forget(self, queue_id: str) -> None:
        """Drop any slot reserved by a message that left the queue."""
        self._reserved.pop(queue_id, None)
        self._granted.pop(queue_id, None)

    def in_flight(self, mailbox: str) -> int:
        """Requests as `mailbox` under way."""
        return self._get(mailbox).in_flight
