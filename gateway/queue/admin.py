"""Queue administration: the operations behind `smtp-graph-gateway queue …` (and the console).

The same `QueueAdmin` runs inside the daemon (behind its control socket, so the delivery
engine hears of every change at once) and, when no daemon runs, in the command itself with
the queue taken for the command's lifetime. It works on any `Queue`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import AdminError
from gateway.queue.base import Queue
from gateway.queue.model import STATE_WORDS

__all__ = ["AdminError", "Listener", "QueueAdmin"]


@dataclass
class Listener:
    """What the delivery engine wants to hear (no-ops when no daemon runs)."""

    queued: Callable[[str], object] = field(default=lambda _queue_id: None)
    removed: Callable[[str], object] = field(default=lambda _queue_id: None)


class QueueAdmin:
    """Retry, hold, release, delete and purge messages in one queue."""

    def __init__(self, queue: Queue, listener: Listener | None = None) -> None:
        self._queue = queue
        self._listener = listener or Listener()

    async def run(
        self, operation: str, queue_id: str = "", older_than: float = 0.0
    ) -> dict[str, Any]:
        """Perform one named operation; `AdminError` explains a refusal."""
        if operation == "retry":
            return await self.retry(queue_id)
        if operation == "hold":
            return await self.hold(queue_id)
        if operation == "release":
            return await self.release(queue_id)
        if operation == "delete":
            return await self.delete(queue_id)
        if operation == "purge":
            return await self.purge_held(older_than)
        raise AdminError(f"unknown operation {operation!r}")

    async def _state(self, queue_id: str) -> str:
        state = await self._queue.state_of(queue_id)
        if state is None:
            raise AdminError(f"no message {queue_id} in the queue")
        return state

    async def retry(self, queue_id: str) -> dict[str, Any]:
        """Make one queued message (or, with `all`, every queued message) due now."""
        if queue_id == "all":
            ids = [entry.queue_id for entry in await self._queue.entries("queue")]
        else:
            state = await self._state(queue_id)
            if state != "queue":
                hint = " (use release)" if state == "hold" else ""
                raise AdminError(f"{queue_id} is {STATE_WORDS.get(state, state)}, not queued{hint}")
            ids = [queue_id]
        done = []
        for each in ids:
            if await self._queue.requeue(each):
                self._listener.queued(each)
                done.append(each)
        return {"retried": done}

    async def hold(self, queue_id: str) -> dict[str, Any]:
        """Stop delivering a queued message until it is released."""
        state = await self._state(queue_id)
        if state == "active":
            raise AdminError(f"{queue_id} is being delivered right now; try again in a moment")
        if state != "queue":
            raise AdminError(f"{queue_id} is {STATE_WORDS.get(state, state)}, not queued")
        reason = {"reason": "held by an administrator"}
        if not await self._queue.hold(queue_id, reason, state="queue"):
            raise AdminError(f"{queue_id} left the queue meanwhile")
        self._listener.removed(queue_id)
        return {"held": [queue_id]}

    async def release(self, queue_id: str) -> dict[str, Any]:
        """Put a held message back in the queue, due now."""
        if await self._state(queue_id) != "hold":
            raise AdminError(f"{queue_id} is not held")
        await self._queue.requeue(queue_id)
        self._listener.queued(queue_id)
        return {"released": [queue_id]}

    async def delete(self, queue_id: str) -> dict[str, Any]:
        """Remove a message for good (not one being delivered)."""
        if await self._state(queue_id) == "active":
            raise AdminError(f"{queue_id} is being delivered right now; try again in a moment")
        if not await self._queue.delete(queue_id):
            raise AdminError(f"{queue_id} left the queue meanwhile")
        self._listener.removed(queue_id)
        return {"deleted": [queue_id]}

    async def purge_held(self, older_than: float) -> dict[str, Any]:
        """Delete held messages that have been held for longer than `older_than` seconds."""
        cutoff = time.time() - older_than
        purged = []
        for entry in await self._queue.entries("hold"):
            info = await self._queue.show(entry.queue_id) or {}
            held_at = float(info.get("hold", {}).get("held_at", entry.next_attempt))
            if held_at <= cutoff and await self._queue.delete(entry.queue_id):
                purged.append(entry.queue_id)
        return {"purged": purged}
