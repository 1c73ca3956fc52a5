"""The file spool as the gateway's `Queue`: the blocking `Spool` behind the async interface.

Where each call runs is this adapter's business: writes for the SMTP side on the accept
threads, the delivery path on the delivery threads (so accepting never waits behind
delivery), small records (up to `INLINE_IO_LIMIT`) read on the event loop itself — a rename and
a read of a few KiB from the page cache cost less than a trip to a thread and back — and
delivered messages removed by a thread of their own (`Remover`).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, TypeVar

from gateway.config.units import format_size
from gateway.queue.base import Record
from gateway.queue.model import Arrival, Due, Entry, Envelope, Exported, Listed, QueuedMessage
from gateway.spool.remover import Remover
from gateway.spool.store import Spool
from gateway.spool.writing import RecordWriter

T = TypeVar("T")
INLINE_IO_LIMIT = 64 * 1024


class FileQueue:
    """A spool directory, owned by this process."""

    name = "files"

    def __init__(
        self,
        directory: Path,
        *,
        min_free_space: int = 0,
        accept_executor: Executor | None = None,
        delivery_executor: Executor | None = None,
    ) -> None:
        self.spool = Spool(directory)
        self.directory = directory
        self._min_free = min_free_space
        self._accept = accept_executor
        self._delivery = delivery_executor
        self._remover = Remover(self.spool)
        self._sizes: dict[str, int] = {}  # record sizes we know of, to read small ones inline

    async def _run(self, executor: Executor | None, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, functools.partial(function, *args))

    async def _read(self, queue_id: str, function: Callable[[str], T]) -> T:
        if 0 < self._sizes.get(queue_id, 0) <= INLINE_IO_LIMIT:
            return function(queue_id)
        return await self._run(self._delivery, function, queue_id)

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self, *, exclusive: bool = True) -> None:
        """Take the spool's lock (and create its layout); reading needs neither."""
        if exclusive:
            await asyncio.to_thread(self.spool.open)

    async def close(self) -> None:
        """Finish the removals asked for, then release the lock."""
        await asyncio.to_thread(self._remover.close)
        self.spool.close()

    async def recover(self) -> list[Due]:
        found = await asyncio.to_thread(self.spool.recover)
        self._sizes.update((due.queue_id, due.size) for due in found)
        return found

    # -- acceptance ----------------------------------------------------------------------------

    def receive(self) -> FileWriter:
        """A message to be written as it arrives (the SMTP side streams DATA into it)."""
        return FileWriter(self, self.spool.receive())

    async def store(self, arrival: Arrival, message: bytes) -> str:
        # (one node holds the mailbox limits in memory: `arrival.mailbox` is not kept)
        queue_id = await self._run(self._accept, self.spool.store, arrival, message)
        self._sizes[queue_id] = len(message)
        return queue_id

    # -- delivery ------------------------------------------------------------------------------

    async def peek(self, queue_id: str) -> Envelope | None:
        return await self._read(queue_id, self.spool.peek)

    async def lease(self, queue_id: str) -> QueuedMessage | None:
        try:
            return await self._read(queue_id, self.spool.lease)
        except BaseException:
            self._sizes.pop(queue_id, None)
            raise

    async def complete(self, queue_id: str) -> None:
        self._sizes.pop(queue_id, None)
        self._remover.remove(queue_id)

    async def defer(self, queue_id: str, next_attempt: float, attempt: Record) -> str | None:
        return await self._run(self._delivery, self.spool.defer, queue_id, next_attempt, attempt)

    async def hold(
        self,
        queue_id: str,
        reason: Record,
        *,
        state: str = "active",
        attempt: Record | None = None,
    ) -> bool:
        hold = functools.partial(self.spool.hold, queue_id, reason, state=state, attempt=attempt)
        held = await self._run(self._delivery, hold)
        if held:
            self._sizes.pop(queue_id, None)
        return held

    async def split(
        self,
        queued: QueuedMessage,
        rcpt_tos: tuple[str, ...],
        next_attempt: float,
        attempt: Record,
    ) -> str:
        copy = await self._run(
            self._delivery, self.spool.split, queued, rcpt_tos, next_attempt, attempt
        )
        self._sizes[copy] = len(queued.message)
        return copy

    async def abandon(self, queue_id: str) -> None:
        self.spool.abandon(queue_id)

    async def reclaim(self) -> list[str]:
        return await self._run(self._delivery, self.spool.reclaim)

    # -- reading and administration ------------------------------------------------------------

    async def state_of(self, queue_id: str) -> str | None:
        return await asyncio.to_thread(self.spool.state_of, queue_id)

    async def entries(self, state: str | None = None) -> list[Entry]:
        return await asyncio.to_thread(self.spool.entries, state)

    async def ids(self, state: str | None = None) -> list[tuple[str, str]]:
        return await asyncio.to_thread(self.spool.ids, state)

    async def listing(self, state: str | None = None) -> list[Listed]:
        return await asyncio.to_thread(self.spool.listing, state)

    async def show(self, queue_id: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self.spool.show, queue_id)

    async def attempts(self, queue_id: str) -> list[Record]:
        return await asyncio.to_thread(self.spool.attempts, queue_id)

    async def requeue(self, queue_id: str) -> bool:
        return await asyncio.to_thread(self.spool.requeue, queue_id)

    async def delete(self, queue_id: str) -> bool:
        deleted = await asyncio.to_thread(self.spool.delete, queue_id)
        if deleted:
            self._sizes.pop(queue_id, None)
        return deleted

    # -- moving a queue ------------------------------------------------------------------------

    async def export(self, queue_id: str) -> Exported | None:
        return await asyncio.to_thread(self.spool.export, queue_id)

    async def adopt(self, message: Exported) -> bool:
        return await asyncio.to_thread(self.spool.adopt, message)

    # -- health --------------------------------------------------------------------------------

    async def census(self) -> dict[str, object]:
        return await asyncio.to_thread(self.spool.census)

    def census_now(self) -> dict[str, object]:
        """`census` for a caller already on a thread (the metrics scrape)."""
        return self.spool.census()

    def available(self) -> bool:
        """A directory on this machine is always there (its troubles are `problem`s)."""
        return True

    def problem(self) -> str | None:
        """Too little free space for another message of the largest size (and a half)."""
        try:
            free = self.spool.free_bytes()
        except OSError:
            return "the spool's file system cannot be read"
        if free < self._min_free:
            return f"only {format_size(free)} free in the spool (spool.min_free_space)"
        return None

    def readiness(self) -> dict[str, bool]:
        return {"spool_writable": self.spool.writable()}


class FileWriter:
    """A message arriving into the spool: pieces gathered into `FLUSH`-sized writes on the
    accept threads, so a small message costs one trip to a thread (at `commit`) and a large one
    never sits whole in memory."""

    FLUSH = 1024 * 1024

    def __init__(self, queue: FileQueue, record: RecordWriter) -> None:
        self._queue = queue
        self._record = record
        self._pending: list[bytes] = []
        self._pending_size = 0
        self.queue_id = record.queue_id
        self.size = 0

    async def write(self, data: bytes) -> None:
        """Append message bytes (`SpoolError` when the spool cannot take them)."""
        self._pending.append(data)
        self._pending_size += len(data)
        self.size += len(data)
        if self._pending_size >= self.FLUSH:
            pending, self._pending, self._pending_size = self._pending, [], 0
            await self._queue._run(self._queue._accept, self._append, pending)

    def _append(self, pieces: list[bytes]) -> None:
        self._record.write(b"".join(pieces) if len(pieces) > 1 else pieces[0])

    async def commit(self, arrival: Arrival) -> str:
        """Make the message durable and queued; its queue ID (`SpoolError` if it cannot be)."""
        envelope = arrival.envelope(self.queue_id, self.size)
        pending, self._pending = self._pending, []
        await self._queue._run(self._queue._accept, self._finish, pending, envelope)
        self._queue._sizes[self.queue_id] = self.size
        return self.queue_id

    def _finish(self, pending: list[bytes], envelope: Envelope) -> None:
        if pending:
            self._append(pending)
        self._record.commit(envelope)

    async def abort(self) -> None:
        """Drop the message (refused at the end of DATA, or the client left)."""
        self._pending = []
        await self._queue._run(self._queue._accept, self._record.abort)
