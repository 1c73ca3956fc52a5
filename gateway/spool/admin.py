"""Queue administration: the operations behind `smtp-graph-gateway queue …`.

The same `QueueAdmin` runs inside the daemon (behind its control socket, so the delivery
engine hears of every change at once) and, when no daemon runs, in the command itself with the
spool lock held. Blocking file I/O: the daemon calls it from a thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.spool.store import Spool


@dataclass
class Listener:
    """What the delivery engine wants to hear (no-ops when no daemon runs)."""

    queued: Callable[[str], object] = field(default=lambda _queue_id: None)
    removed: Callable[[str], object] = field(default=lambda _queue_id: None)


class AdminError(Exception):
    """An operation that cannot be done, with the reason for the administrator."""


class QueueAdmin:
    """Retry, hold, release, delete and purge messages in one spool."""

    def __init__(self, spool: Spool, listener: Listener | None = None) -> None:
        self._spool = spool
        self._listener = listener or Listener()

    def run(self, operation: str, queue_id: str = "", older_than: float = 0.0) -> dict[str, Any]:
        """Perform one named operation; `AdminError` explains a refusal."""
        if operation == "retry":
            return self.retry(queue_id)
        if operation == "hold":
            return self.hold(queue_id)
        if operation == "release":
            return self.release(queue_id)
        if operation == "delete":
            return self.delete(queue_id)
        if operation == "purge":
            return self.purge_held(older_than)
        raise AdminError(f"unknown operation {operation!r}")

    def _state(self, queue_id: str) -> str:
        state = self._spool.state_of(queue_id)
        if state is None:
            raise AdminError(f"no message {queue_id} in the spool")
        return state

    def retry(self, queue_id: str) -> dict[str, Any]:
        """Make one queued message (or, with `all`, every queued message) due now."""
        ids = (
            [entry.queue_id for entry in self._spool.entries("queue")]
            if queue_id == "all"
            else [queue_id]
        )
        done = []
        for each in ids:
            if queue_id != "all" and self._state(each) != "queue":
                raise AdminError(
                    f"{each} is {self._state(each)}, not queued"
                    + (" (use release)" if self._state(each) == "hold" else "")
                )
            if self._spool.requeue(each):
                self._listener.queued(each)
                done.append(each)
        return {"retried": done}

    def hold(self, queue_id: str) -> dict[str, Any]:
        """Stop delivering a queued message until it is released."""
        state = self._state(queue_id)
        if state == "active":
            raise AdminError(f"{queue_id} is being delivered right now; try again in a moment")
        if state != "queue":
            raise AdminError(f"{queue_id} is {state}, not queued")
        if not self._spool.hold(queue_id, {"reason": "held by an administrator"}, state="queue"):
            raise AdminError(f"{queue_id} left the queue meanwhile")
        self._listener.removed(queue_id)
        return {"held": [queue_id]}

    def release(self, queue_id: str) -> dict[str, Any]:
        """Put a held message back in the queue, due now."""
        if self._state(queue_id) != "hold":
            raise AdminError(f"{queue_id} is not held")
        self._spool.requeue(queue_id)
        self._listener.queued(queue_id)
        return {"released": [queue_id]}

    def delete(self, queue_id: str) -> dict[str, Any]:
        """Remove a message for good (not one being delivered)."""
        if self._state(queue_id) == "active":
            raise AdminError(f"{queue_id} is being delivered right now; try again in a moment")
        if not self._spool.delete(queue_id):
            raise AdminError(f"{queue_id} left the spool meanwhile")
        self._listener.removed(queue_id)
        return {"deleted": [queue_id]}

    def purge_held(self, older_than: float) -> dict[str, Any]:
        """Delete held messages that have been held for longer than `older_than` seconds."""
        cutoff = time.time() - older_than
        purged = []
        for entry in list(self._spool.entries("hold")):
            info = self._spool.show(entry.queue_id) or {}
            held_at = float(info.get("hold", {}).get("held_at", entry.next_attempt))
            if held_at <= cutoff and self._spool.delete(entry.queue_id):
                purged.append(entry.queue_id)
        return {"purged": purged}
