"""How many bytes of mail may be in delivery at once, so large messages cannot exhaust memory.

Delivering a message holds it in memory, and converting or uploading it takes about as much
again: eight 30 MB scans at once would need the best part of two gigabytes. The budget admits
a message when the sizes of those in delivery, its own included, stay within the limit. One
message is always admitted when nothing else is in delivery, however large, so every message
can go.

Messages of at most `SMALL` bytes are not counted and never wait: ordinary mail must not
stand behind a 150 MB scan, and what they take is bounded by the number of workers.

A message that does not fit waits in line (first come, first served) without holding a
worker. While anything waits, newcomers queue behind it, so a stream of small messages cannot
keep a large one waiting for ever. When bytes are given back, the messages at the head of the
line that now fit get their bytes reserved and are handed back to be scheduled; their next
`take` uses the reservation. Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections import deque

SMALL = 256 * 1024  # messages up to this size are not counted


class SizeBudget:
    """Bytes of messages in delivery, against a limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._held: dict[str, int] = {}  # queue ID → bytes, in delivery or reserved for it
        self._line: deque[tuple[str, int]] = deque()
        self._waiting: set[str] = set()

    @property
    def used(self) -> int:
        """Bytes in delivery or reserved for messages about to start."""
        return self._used

    @property
    def waiting(self) -> int:
        """Messages waiting for room."""
        return len(self._line)

    def take(self, queue_id: str, size: int) -> bool:
        """Room for `queue_id` (of `size` bytes) now? False: it waits in line and comes back
        from `give_back`."""
        if size <= SMALL or queue_id in self._held:
            return True  # small, or reserved for it when it reached the head of the line
        if queue_id in self._waiting:
            return False
        if not self._line and self._fits(size):
            self._held[queue_id] = size
            self._used += size
            return True
        self._line.append((queue_id, size))
        self._waiting.add(queue_id)
        return False

    def give_back(self, queue_id: str) -> list[str]:
        """`queue_id` left delivery (or the line); the waiting IDs that now have room."""
        self._used -= self._held.pop(queue_id, 0)
        if queue_id in self._waiting:
            self._waiting.discard(queue_id)
            self._line = deque(entry for entry in self._line if entry[0] != queue_id)
        return self._admit_waiting()

    def resize(self, limit: int) -> list[str]:
        """A new limit (a configuration reload); the waiting IDs that now have room."""
        self.limit = limit
        return self._admit_waiting()

    def _admit_waiting(self) -> list[str]:
        ready = []
        while self._line and self._fits(self._line[0][1]):
            waiting, size = self._line.popleft()
            self._waiting.discard(waiting)
            self._held[waiting] = size
            self._used += size
            ready.append(waiting)
        return ready

    def _fits(self, size: int) -> bool:
        return not self._held or self._used + size <= self.limit
