"""The spool directory: durable writes, leases, retry times, holds, and recovery after a crash.

Layout under the spool directory::

    tmp/      files being written (removed at start-up: never acknowledged)
    queue/    complete messages waiting; a file's mtime is the earliest next attempt
    active/   messages a worker is delivering (moved back to queue/ at start-up)
    hold/     messages that failed permanently or were held by an administrator,
              each with a .reason.json beside it
    corrupt/  files that are not complete records, kept for inspection
    meta/     one .json per message with its attempt history (kept until it leaves)
    lock      held while a daemon (or an offline `queue` command) uses the spool

A message is written to tmp/, fsynced, renamed into queue/ and the directory fsynced before
`store` returns; only then may the SMTP side answer 250. Every state change is a rename, which
is atomic, so a crash leaves each message in exactly one state. The next-attempt time lives in
the queue file's mtime (as Postfix does), so deferring is one `utime` and one rename, and the
state survives restarts without a database. All methods block: callers on the event loop run
them in a thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog

from gateway.errors import CorruptRecord, SpoolError
from gateway.queue.model import (
    QUEUE_STATES,
    Arrival,
    Due,
    Envelope,
    Exported,
    QueuedMessage,
    is_queue_id,
    new_queue_id,
)
from gateway.spool.files import open_body, read_envelope, read_json
from gateway.spool.inventory import SpoolInventory
from gateway.spool.writing import GroupSync, RecordWriter, fsync_directory, write_atomic

log = structlog.get_logger("gateway.spool")
STATES = QUEUE_STATES
_DIRECTORIES = ("tmp", *STATES, "meta")
SUFFIX = ".msg"
INLINE_BODY = 4 * 1024 * 1024  # larger messages are read from their file as delivery needs
COPY_PIECE = 1024 * 1024


class Spool(SpoolInventory):
    """One spool directory, owned by one process at a time."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.listed = {}
        self._lock_fd: int | None = None
        self._queue_sync = GroupSync(directory / "queue")
        self.queue_sync = self._queue_sync.sync
        # Messages a worker holds in active/ (set operations are atomic under the GIL, and
        # the spool's threads and the event loop both lease and release).
        self._leases: set[str] = set()

    def dir(self, state: str) -> Path:
        return self.directory / state

    def path(self, state: str, queue_id: str) -> Path:
        return self.directory / state / (queue_id + SUFFIX)

    # -- ownership ---------------------------------------------------------------------------

    def open(self) -> None:
        """Create the layout if needed and take the lock; `SpoolError` if another process has it."""
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            for name in _DIRECTORIES:
                self.dir(name).mkdir(mode=0o700, exist_ok=True)
            fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            raise SpoolError(f"cannot use spool {self.directory}: {error.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise SpoolError(
                f"spool {self.directory} is in use by another gateway process"
            ) from None
        self._lock_fd = fd

    def close(self) -> None:
        """Release the lock."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def recover(self) -> list[Due]:
        """After a start or crash: drop partial writes, requeue leased messages.

        Returns every queued message (with its next attempt and size), oldest ID first.
        Whatever was being delivered when the process stopped is queued again for now:
        delivered again at least once, never lost. Anything in queue/ or active/ that is not a
        regular file with a queue ID for a name goes to corrupt/ (see `_scan`).
        """
        self._remove_leftovers()
        now = time.time()
        requeued = set()
        for queue_id, _size in self._scan("active"):
            leased = self.path("active", queue_id)
            os.utime(leased, (now, now))
            os.replace(leased, self.path("queue", queue_id))
            requeued.add(queue_id)
        fsync_directory(self.dir("queue"))
        found = [
            Due(queue_id, mtime, size, queue_id in requeued, self._outage(queue_id, mtime, now))
            for queue_id, (size, mtime) in self._scan_with_times("queue")
        ]
        found.sort()
        return found

    def _outage(self, queue_id: str, next_attempt: float, now: float) -> str:
        """The tenant whose outage deferred a message that is not due yet (its history's last
        record says so), else "" (a message due now is tried anyway)."""
        if next_attempt <= now:
            return ""
        history = self.attempts(queue_id)
        tenant = history[-1].get("outage") if history else None
        return tenant if isinstance(tenant, str) else ""

    def _remove_leftovers(self) -> None:
        """Partial writes: tmp/ (never acknowledged) and `*.tmp` side files a failed write left."""
        for leftover in self.dir("tmp").iterdir():
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)
        for name in ("meta", "hold"):
            for leftover in self.dir(name).glob("*.tmp"):
                with contextlib.suppress(OSError):
                    leftover.unlink(missing_ok=True)

    def _scan(self, state: str) -> list[tuple[str, int]]:
        """(queue ID, size) of every record in a state directory, by name order."""
        return [(queue_id, size) for queue_id, (size, _mtime) in self._scan_with_times(state)]

    def _scan_with_times(self, state: str) -> list[tuple[str, tuple[int, float]]]:
        """(queue ID, (size, mtime)) of every regular `ID.msg` file in a state directory.
        Other entries named `*.msg` (links, FIFOs, directories, names that are not queue IDs)
        are moved to corrupt/ with a log line: never followed, never opened."""
        found = []
        with os.scandir(self.dir(state)) as entries:
            listed = sorted(entries, key=lambda item: item.name)
        for entry in listed:
            if not entry.name.endswith(SUFFIX):
                continue
            queue_id = entry.name[: -len(SUFFIX)]
            try:
                regular = entry.is_file(follow_symlinks=False)
                stat = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # gone meanwhile
            if regular and is_queue_id(queue_id):
                found.append((queue_id, (stat.st_size, stat.st_mtime)))
            elif state in ("queue", "active"):
                why = "not a queue ID" if regular else "not a regular file"
                self._quarantine(Path(entry.path), why)
        return found

    def _quarantine(self, path: Path, reason: str) -> None:
        """Move a spool entry that is not a record to corrupt/ (under a fresh name if taken)."""
        target = self.dir("corrupt") / path.name
        if os.path.lexists(target):
            target = target.with_name(f"{path.name}.{new_queue_id()}")
        try:
            os.rename(path, target)
        except OSError as error:
            log.error(
                "spool_entry_unmovable",
                path=str(path),
                reason=reason,
                error=error.strerror,
                action="remove it by hand",
            )
            return
        queue_id = path.name.removesuffix(SUFFIX)
        log.error(
            "spool_corrupt",
            queue_id=queue_id if is_queue_id(queue_id) else None,
            path=str(path),
            reason=reason,
            action=f"moved to {target} for inspection; it is never delivered",
        )

    # -- the delivery path -------------------------------------------------------------------

    def receive(self) -> RecordWriter:
        """A new message, to be written as it arrives (see `RecordWriter`)."""
        return RecordWriter(self, new_queue_id())

    def store(self, arrival: Arrival, message: bytes) -> str:
        """Write a whole message durably and return its queue ID. `SpoolError` if it cannot."""
        writer = self.receive()
        writer.write(message)
        writer.commit(arrival.envelope(writer.queue_id, len(message)))
        return writer.queue_id

    def split(
        self,
        queued: QueuedMessage,
        rcpt_tos: tuple[str, ...],
        next_attempt: float,
        attempt: dict[str, Any],
    ) -> str:
        """Queue the same message again for some of its recipients only, due at
        `next_attempt`; return the new queue ID. `SpoolError` if it cannot.

        For recipients a server deferred while the others took the message. The copy keeps
        the original's arrival time (the queue lifetime still counts from it) and its attempt
        history with `attempt` added, so backoff and `queue show` go on from there.
        """
        writer = self.receive()
        envelope = replace(queued.envelope, queue_id=writer.queue_id, rcpt_tos=rcpt_tos)
        with contextlib.suppress(OSError):  # the history is a courtesy, not the message
            self._save_history(envelope.queue_id, [*self.attempts(queued.queue_id), attempt])
        try:
            message = queued.message
            for start in range(0, len(message), COPY_PIECE):  # a large one a piece at a time
                writer.write(message[start : start + COPY_PIECE])
            writer.commit(envelope, next_attempt)
        except SpoolError:
            self._meta(envelope.queue_id).unlink(missing_ok=True)
            raise
        return envelope.queue_id

    def lease(self, queue_id: str) -> QueuedMessage | None:
        """Move a queued message to active/ and read it; None if it is no longer queued.

        A message up to `INLINE_BODY` is read into memory; a larger one stays in its file and
        is read as it is needed (`FileBody`, closed by `QueuedMessage.close`). The message
        stays leased until `release`, `complete` or `hold` (or `abandon`). A file that is not a
        complete record goes to corrupt/ and `CorruptRecord` is raised.
        """
        active = self.path("active", queue_id)
        self._leases.add(queue_id)  # before the rename: `reclaim` must never take it
        try:
            os.rename(self.path("queue", queue_id), active)
        except FileNotFoundError:
            self._leases.discard(queue_id)
            return None
        try:
            envelope, body = open_body(active, queue_id)
        except CorruptRecord as error:
            self._leases.discard(queue_id)
            self._quarantine(active, str(error))
            raise
        except BaseException:
            self._leases.discard(queue_id)  # `reclaim` puts it back in the queue
            raise
        attempts = len(self.attempts(queue_id))
        if envelope.size > INLINE_BODY:
            return QueuedMessage(envelope, body, attempts, close=body.close)
        try:
            message = bytes(body)
        finally:
            body.close()
        return QueuedMessage(envelope, message, attempts)

    def peek(self, queue_id: str) -> Envelope | None:
        """The envelope of a queued message without leasing it; None if it is not queued."""
        try:
            return read_envelope(self.path("queue", queue_id), queue_id)
        except FileNotFoundError:
            return None

    def release(self, queue_id: str, next_attempt: float) -> None:
        """Put a leased message back in the queue, not to be tried before `next_attempt`.
        Needs no free space: a change of mtime and a rename."""
        active = self.path("active", queue_id)
        os.utime(active, (time.time(), next_attempt))
        os.replace(active, self.path("queue", queue_id))
        self._leases.discard(queue_id)

    def defer(self, queue_id: str, next_attempt: float, attempt: dict[str, Any]) -> str | None:
        """Write the attempt (best effort) and queue the message again: a deferral needs no
        free space, so a full disk cannot strand it in active/. Why the history could not be
        written, or None."""
        problem = self.record_attempt(queue_id, attempt)
        self.release(queue_id, next_attempt)
        return problem

    def complete(self, queue_id: str) -> None:
        """Forget a delivered message."""
        self.path("active", queue_id).unlink(missing_ok=True)
        self._leases.discard(queue_id)
        self._meta(queue_id).unlink(missing_ok=True)

    def abandon(self, queue_id: str) -> None:
        """Give up a lease without moving the message: `reclaim` queues it again later. For a
        worker that could neither finish nor release a message (the disk failing under it)."""
        self._leases.discard(queue_id)

    def reclaim(self) -> list[str]:
        """Messages in active/ that no lease holds (their worker failed before it could put
        them back): queued again, due now. Their IDs."""
        back = []
        now = time.time()
        for queue_id, _size in self._scan("active"):
            if queue_id in self._leases:
                continue
            active = self.path("active", queue_id)
            try:
                os.utime(active, (now, now))
                os.replace(active, self.path("queue", queue_id))
            except FileNotFoundError:
                continue
            except OSError as error:
                log.error(
                    "spool_requeue_failed",
                    queue_id=queue_id,
                    error=error.strerror,
                    action="it is tried again at the next check; see the spool's disk",
                )
                continue
            back.append(queue_id)
        return back

    def hold(
        self,
        queue_id: str,
        reason: dict[str, Any],
        *,
        state: str = "active",
        attempt: dict[str, Any] | None = None,
    ) -> bool:
        """Park a message (leased, or queued when an administrator asks) with its reason (and
        the attempt that decided it in its history).

        The reason and the attempt are written when the disk has room; the hold itself is a
        rename, which needs none, so a full disk cannot keep a message from being held."""
        if attempt is not None and (problem := self.record_attempt(queue_id, attempt)):
            log.warning("history_not_written", queue_id=queue_id, error=problem)
        note = self.dir("hold") / f"{queue_id}.reason.json"
        try:
            write_atomic(note, json.dumps({**reason, "held_at": time.time()}, indent=2) + "\n")
        except OSError as error:
            log.error(
                "hold_reason_not_written",
                queue_id=queue_id,
                error=error.strerror,
                reason=reason.get("reason"),
                action="the message is held all the same",
            )
        try:
            os.replace(self.path(state, queue_id), self.path("hold", queue_id))
        except FileNotFoundError:
            note.unlink(missing_ok=True)
            return False
        if state == "active":
            self._leases.discard(queue_id)
        fsync_directory(self.dir("hold"))
        return True

    def adopt(self, message: Exported) -> bool:
        """Keep a message another queue exported, under its queue ID, in its state (queued
        with its next attempt, or held with its reason) and with its history; durable before
        it returns. False when the spool has it already (an interrupted `spool migrate` run
        again). `SpoolError` when it cannot be written: nothing is kept then."""
        queue_id = message.queue_id
        if not is_queue_id(queue_id):
            raise CorruptRecord(f"{queue_id!r} is not a queue ID")
        if self.state_of(queue_id) is not None:
            return False
        writer = RecordWriter(self, queue_id)
        body = message.message
        try:
            for start in range(0, len(body), COPY_PIECE):
                writer.write(body[start : start + COPY_PIECE])
            if message.attempts:
                self._save_history(queue_id, list(message.attempts))
            if message.state == "hold":
                note = {"reason": "held", **(message.hold_reason or {})}
                write_atomic(self.dir("hold") / f"{queue_id}.reason.json", json.dumps(note))
            writer.commit(message.envelope, message.next_attempt, state=message.state)
        except (OSError, SpoolError) as error:
            writer.abort()
            self._meta(queue_id).unlink(missing_ok=True)
            (self.dir("hold") / f"{queue_id}.reason.json").unlink(missing_ok=True)
            if isinstance(error, SpoolError):
                raise
            raise SpoolError(f"cannot store message: {error.strerror}") from None
        return True

    def record_attempt(self, queue_id: str, attempt: dict[str, Any]) -> str | None:
        """Append one attempt to the message's history (for `queue show` and retry counts).

        Best effort: the history is a courtesy, not the message. The reason it could not be
        written (a full disk), or None."""
        try:
            self._save_history(queue_id, [*self.attempts(queue_id), attempt])
        except OSError as error:
            return error.strerror or type(error).__name__
        return None

    def _save_history(self, queue_id: str, history: list[dict[str, Any]]) -> None:
        text = json.dumps({"attempts": history}, separators=(",", ":"))
        write_atomic(self._meta(queue_id), text)

    def attempts(self, queue_id: str) -> list[dict[str, Any]]:
        """The attempt history of a message (empty when it was never tried or is unreadable)."""
        data = read_json(self._meta(queue_id))
        attempts = data.get("attempts", []) if isinstance(data, dict) else []
        if not isinstance(attempts, list):
            return []
        return [attempt for attempt in attempts if isinstance(attempt, dict)]

    def free_bytes(self) -> int:
        """Bytes available to this process on the spool's file system."""
        stats = os.statvfs(self.directory)
        return stats.f_bavail * stats.f_frsize

    def writable(self) -> bool:
        """Whether a file can be created in the spool right now."""
        return self.dir("tmp").is_dir() and os.access(self.dir("tmp"), os.W_OK | os.X_OK)
