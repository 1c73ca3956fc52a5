"""Delivery outcomes over time, for the console's charts: delivered, deferred and held attempts
per minute for the last 24 hours, in memory (a restart starts the charts again; the metrics'
counters are the long-term record). The clock is injected."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from gateway.delivery.events import DeliveryEvent

OUTCOMES = ("delivered", "deferred", "held")
_MINUTES = 24 * 60


class Activity:
    """Per-minute counts of delivery outcomes."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._minutes: deque[tuple[int, dict[str, int]]] = deque(maxlen=_MINUTES)

    def record(self, event: DeliveryEvent) -> None:
        """One attempt ended (a delivery engine observer)."""
        if event.result not in OUTCOMES:
            return
        minute = int(self._clock() // 60)
        if not self._minutes or self._minutes[-1][0] != minute:
            self._minutes.append((minute, dict.fromkeys(OUTCOMES, 0)))
        self._minutes[-1][1][event.result] += 1

    def series(self, buckets: int, width: int) -> list[dict[str, int]]:
        """The last `buckets` periods of `width` minutes each, oldest first, the current one
        last: each a count per outcome."""
        now = int(self._clock() // 60)
        first = now - buckets * width + 1
        found = [dict.fromkeys(OUTCOMES, 0) for _ in range(buckets)]
        for minute, counts in self._minutes:
            if minute >= first:
                bucket = found[(minute - first) // width]
                for outcome, count in counts.items():
                    bucket[outcome] += count
        return found

    def charts(self) -> dict[str, list[dict[str, int]]]:
        """The last hour by minute and the last day by hour."""
        return {"hour": self.series(60, 1), "day": self.series(24, 60)}
