"""Per-address limit on failed SMTP AUTH attempts: a temporary lockout against password guessing.

After `max_failures` failures within `window` seconds an address is locked out for `lockout`
seconds; a success clears its count. The clock is injected, so this is testable without waiting.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

_MAX_TRACKED = 10_000


class FailureLimiter:
    """Counts AUTH failures per client address."""

    def __init__(
        self,
        *,
        max_failures: int = 5,
        window: float = 300.0,
        lockout: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max = max_failures
        self._window = window
        self._lockout = lockout
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._locked_until: dict[str, float] = {}

    def locked(self, address: str) -> bool:
        """Whether `address` is locked out right now."""
        until = self._locked_until.get(address)
        if until is None:
            return False
        if self._clock() >= until:
            del self._locked_until[address]
            return False
        return True

    def begin(self, address: str) -> bool:
        """A login is about to be checked: False if `address` is locked out, else the attempt
        is counted now, as a failure until `succeeded` says otherwise. Counting before the
        (slow) password check means parallel attempts cannot all pass the lockout check first:
        at most `max_failures` passwords are tried per window, however many arrive at once."""
        if self.locked(address):
            return False
        now = self._clock()
        if len(self._failures) > _MAX_TRACKED:  # many addresses (IPv6 spraying): forget stale ones
            self._failures = {
                key: times
                for key, times in self._failures.items()
                if times and times[-1] >= now - self._window
            }
        recent = self._failures.setdefault(address, deque())
        recent.append(now)
        while recent and recent[0] < now - self._window:
            recent.popleft()
        if len(recent) >= self._max:
            self._locked_until[address] = now + self._lockout
            del self._failures[address]
        return True

    def failed(self, address: str) -> bool:
        """Count one failed login (begin + no success); True when it locks the address out."""
        return self.begin(address) and self.locked(address)

    def succeeded(self, address: str) -> None:
        """A successful login clears the address's failures (and a lockout its own attempt
        started, since that attempt was not a failure after all)."""
        self._failures.pop(address, None)
        self._locked_until.pop(address, None)
