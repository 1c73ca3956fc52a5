"""Removing delivered messages on a thread of their own, so the event loop never waits on disk.

Removing a file is a journal operation. While other threads' fsyncs commit the journal (every
message accepted is one), an unlink can take a millisecond or more, and on the event loop that
stalls every SMTP session and every delivery. Delivered messages are therefore handed to one
thread that removes them in turn; handing one over costs the loop a queue put, with no reply
to wait for.

Nothing is promised that was not before: a delivered message whose file is still in active/
when the process dies is queued again at the next start and delivered at least once more,
exactly as when the process dies between Graph's answer and the unlink.
"""

from __future__ import annotations

import queue
import threading

import structlog

from gateway.spool.store import Spool

log = structlog.get_logger("gateway.spool")


class Remover:
    """Removes delivered messages from one spool in the background."""

    def __init__(self, spool: Spool) -> None:
        self._spool = spool
        self._pending: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def remove(self, queue_id: str) -> None:
        """Remove a delivered message soon; returns at once. Call from one thread (the loop)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="spool-remover", daemon=True)
            self._thread.start()
        self._pending.put(queue_id)

    def close(self) -> None:
        """Finish the removals asked for so far, then stop the thread. Blocks; idempotent."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._pending.put(None)
            thread.join()

    def _run(self) -> None:
        while (queue_id := self._pending.get()) is not None:
            try:
                self._spool.complete(queue_id)
            except OSError as error:
                log.error(
                    "spool_remove_failed",
                    queue_id=queue_id,
                    reason=error.strerror,
                    action="the delivered message stays in spool/active/ and is sent again at "
                    "the next start; check the spool directory's permissions and file system",
                )
