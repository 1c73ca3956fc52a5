"""An in-memory timetable of queue IDs, for the delivery workers to wait on.

Workers `await next()` and get the ID whose time has come, earliest first. Waiting is on an
event with a timeout until the next due time; nothing polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Callable

from gateway.errors import GatewayError


class ScheduleClosedError(GatewayError):
    """The schedule was closed: workers stop."""


class Schedule:
    """Queue IDs ordered by when they are due."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, str]] = []
        self._order = itertools.count()
        self._changed = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, queue_id: str, delay: float = 0.0) -> None:
        """Make `queue_id` due after `delay` seconds."""
        heapq.heappush(self._heap, (self._clock() + delay, next(self._order), queue_id))
        self._changed.set()

    def close(self) -> None:
        """Wake every waiting worker with `ScheduleClosedError`."""
        self._closed = True
        self._changed.set()

    async def next(self) -> str:
        """The next due queue ID, waiting as long as needed."""
        while True:
            if self._closed:
                raise ScheduleClosedError
            now = self._clock()
            if self._heap and self._heap[0][0] <= now:
                return heapq.heappop(self._heap)[2]
            timeout = self._heap[0][0] - now if self._heap else None
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)
