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
import errno
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

from gateway.errors import SpoolError
from gateway.spool.format import (
    CorruptRecord,
    Envelope,
    encode_head,
    new_queue_id,
    parse_envelope,
    queued_at,
    split_head,
)

STATES = ("queue", "active", "hold", "corrupt")
_DIRECTORIES = ("tmp", *STATES, "meta")
_SUFFIX = ".msg"


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """A message read back from the spool, with how often delivery was tried already."""

    envelope: Envelope
    message: bytes
    attempts: int = 0

    @property
    def queue_id(self) -> str:
        """The queue ID the client was given with 250."""
        return self.envelope.queue_id


class Recovered(NamedTuple):
    """A queued message found at start-up."""

    queue_id: str
    next_attempt: float  # wall-clock time
    size: int  # bytes of its spool file (envelope and message)


@dataclass(frozen=True, slots=True)
class Entry:
    """One message as `queue list` shows it."""

    queue_id: str
    state: str
    next_attempt: float
    size: int


def _read_record(path: Path) -> tuple[Envelope, bytes]:
    """Envelope and message of a queue file, the message read straight into one buffer."""
    with path.open("rb") as handle:
        first = handle.readline()
        if not first.endswith(b"\n"):
            raise CorruptRecord("not a queue file")
        envelope = parse_envelope(handle.read(split_head(first.rstrip(b"\n"))))
        message = handle.read(envelope.size + 1)
    if len(message) != envelope.size:
        raise CorruptRecord(f"message is {len(message)} bytes, envelope says {envelope.size}")
    return envelope, message


def read_envelope(path: Path) -> Envelope:
    """The envelope of a queue file, reading only its head."""
    with path.open("rb") as handle:
        length = split_head(handle.readline().rstrip(b"\n"))
        return parse_envelope(handle.read(length))


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _GroupSync:
    """fsync of one directory shared by every writer waiting for it (group commit).

    A writer renames its file into the directory, then calls `sync()`, which returns only after
    an fsync that *started after* the call. Writers that arrive while an fsync runs are covered
    together by the next one, so N concurrent messages cost far fewer than N directory syncs,
    and none is acknowledged before its own rename is durable.
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._condition = threading.Condition()
        self._requested = 0
        self._completed = 0
        self._running = False
        self.syncs = 0

    def sync(self) -> None:
        with self._condition:
            self._requested += 1
            mine = self._requested
            while self._completed < mine:
                if self._running:
                    self._condition.wait()
                    continue
                self._running = True
                covered = self._requested
                self._condition.release()
                try:
                    _fsync_directory(self._directory)
                finally:
                    self._condition.acquire()
                    self._running = False
                    self._condition.notify_all()
                self._completed = covered
                self.syncs += 1


def _write_atomic(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(text)
    os.replace(partial, path)


class Spool:
    """One spool directory, owned by one process at a time."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock_fd: int | None = None
        self._queue_sync = _GroupSync(directory / "queue")

    def _dir(self, state: str) -> Path:
        return self.directory / state

    def _path(self, state: str, queue_id: str) -> Path:
        return self.directory / state / (queue_id + _SUFFIX)

    # -- ownership ---------------------------------------------------------------------------

    def open(self) -> None:
        """Create the layout if needed and take the lock; `SpoolError` if another process has it."""
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            for name in _DIRECTORIES:
                self._dir(name).mkdir(mode=0o700, exist_ok=True)
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

    def recover(self) -> list[Recovered]:
        """After a start or crash: drop partial writes, requeue leased messages.

        Returns every queued message (with its next attempt and size), oldest ID first.
        Whatever was being delivered when the process stopped is queued again for now:
        delivered again at least once, never lost.
        """
        for leftover in self._dir("tmp").iterdir():
            leftover.unlink(missing_ok=True)
        now = time.time()
        for leased in self._dir("active").glob("*" + _SUFFIX):
            os.utime(leased, (now, now))
            os.replace(leased, self._dir("queue") / leased.name)
        _fsync_directory(self._dir("queue"))
        found = []
        with os.scandir(self._dir("queue")) as entries:
            for entry in entries:
                if entry.name.endswith(_SUFFIX):
                    stat = entry.stat()
                    found.append(
                        Recovered(entry.name[: -len(_SUFFIX)], stat.st_mtime, stat.st_size)
                    )
        found.sort()
        return found

    # -- the delivery path -------------------------------------------------------------------

    def store(
        self,
        *,
        mail_from: str,
        rcpt_tos: tuple[str, ...],
        message: bytes,
        client: str,
        peer: str,
        listener: str,
        send_as: str = "",
        user: str = "",
    ) -> str:
        """Write a message durably and return its queue ID. `SpoolError` if it cannot."""
        envelope = Envelope(
            new_queue_id(),
            mail_from,
            rcpt_tos,
            time.time(),
            client,
            peer,
            listener,
            len(message),
            send_as,
            user,
        )
        self._write(envelope, message)
        return envelope.queue_id

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
        envelope = replace(queued.envelope, queue_id=new_queue_id(), rcpt_tos=rcpt_tos)
        with contextlib.suppress(OSError):  # the history is a courtesy, not the message
            self._save_history(envelope.queue_id, [*self.attempts(queued.queue_id), attempt])
        try:
            self._write(envelope, queued.message, next_attempt)
        except SpoolError:
            self._meta(envelope.queue_id).unlink(missing_ok=True)
            raise
        return envelope.queue_id

    def _write(self, envelope: Envelope, message: bytes, next_attempt: float | None = None) -> None:
        """tmp/ → fdatasync → rename into queue/ → directory fsync (shared, see `_GroupSync`)."""
        partial = self._path("tmp", envelope.queue_id)
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                # Head and message are written in turn: a 40 MB message is not copied first.
                for part in (encode_head(envelope), message):
                    view = memoryview(part)
                    while view:
                        view = view[os.write(fd, view) :]
                os.fdatasync(fd)  # data and size; the name is made durable by the dir fsync
            finally:
                os.close(fd)
            if next_attempt is not None:
                os.utime(partial, (time.time(), next_attempt))
            os.rename(partial, self._path("queue", envelope.queue_id))
            self._queue_sync.sync()
        except OSError as error:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
            reason = "spool disk is full" if error.errno == errno.ENOSPC else error.strerror
            raise SpoolError(f"cannot store message: {reason}") from None

    def lease(self, queue_id: str) -> QueuedMessage | None:
        """Move a queued message to active/ and read it; None if it is no longer queued.

        A file that is not a complete record goes to corrupt/ and `CorruptRecord` is raised.
        """
        active = self._path("active", queue_id)
        try:
            os.rename(self._path("queue", queue_id), active)
        except FileNotFoundError:
            return None
        try:
            envelope, message = _read_record(active)
        except CorruptRecord:
            os.replace(active, self._path("corrupt", queue_id))
            raise
        return QueuedMessage(envelope, message, len(self.attempts(queue_id)))

    def peek(self, queue_id: str) -> Envelope | None:
        """The envelope of a queued message without leasing it; None if it is not queued."""
        try:
            return read_envelope(self._path("queue", queue_id))
        except FileNotFoundError:
            return None

    def release(self, queue_id: str, next_attempt: float) -> None:
        """Put a leased message back in the queue, not to be tried before `next_attempt`."""
        active = self._path("active", queue_id)
        os.utime(active, (time.time(), next_attempt))
        os.replace(active, self._path("queue", queue_id))

    def complete(self, queue_id: str) -> None:
        """Forget a delivered message."""
        self._path("active", queue_id).unlink(missing_ok=True)
        self._meta(queue_id).unlink(missing_ok=True)

    def hold(self, queue_id: str, reason: dict[str, Any], *, state: str = "active") -> bool:
        """Park a message (leased, or queued when an administrator asks) with its reason."""
        note = self._dir("hold") / f"{queue_id}.reason.json"
        _write_atomic(note, json.dumps({**reason, "held_at": time.time()}, indent=2) + "\n")
        try:
            os.replace(self._path(state, queue_id), self._path("hold", queue_id))
        except FileNotFoundError:
            note.unlink(missing_ok=True)
            return False
        _fsync_directory(self._dir("hold"))
        return True

    def record_attempt(self, queue_id: str, attempt: dict[str, Any]) -> None:
        """Append one attempt to the message's history (for `queue show` and retry counts)."""
        self._save_history(queue_id, [*self.attempts(queue_id), attempt])

    def _meta(self, queue_id: str) -> Path:
        return self._dir("meta") / f"{queue_id}.json"

    def _save_history(self, queue_id: str, history: list[dict[str, Any]]) -> None:
        text = json.dumps({"attempts": history}, separators=(",", ":"))
        _write_atomic(self._meta(queue_id), text)

    def attempts(self, queue_id: str) -> list[dict[str, Any]]:
        """The attempt history of a message (empty when it was never tried)."""
        try:
            data = json.loads(self._meta(queue_id).read_text())
        except (OSError, ValueError):
            return []
        attempts = data.get("attempts", []) if isinstance(data, dict) else []
        return attempts if isinstance(attempts, list) else []

    # -- administration ----------------------------------------------------------------------

    def state_of(self, queue_id: str) -> str | None:
        """Which state a message is in, or None if the spool does not have it."""
        for state in STATES:
            if self._path(state, queue_id).exists():
                return state
        return None

    def entries(self, state: str | None = None) -> Iterator[Entry]:
        """Every message (optionally of one state), without reading message bodies."""
        for name in [state] if state else STATES:
            with os.scandir(self._dir(name)) as found:
                for entry in sorted(found, key=lambda item: item.name):
                    if entry.name.endswith(_SUFFIX):
                        stat = entry.stat()
                        queue_id = entry.name[: -len(_SUFFIX)]
                        yield Entry(queue_id, name, stat.st_mtime, stat.st_size)

    def show(self, queue_id: str) -> dict[str, Any] | None:
        """Everything known about one message: envelope, state, attempts, hold reason."""
        state = self.state_of(queue_id)
        if state is None:
            return None
        path = self._path(state, queue_id)
        info: dict[str, Any] = {"queue_id": queue_id, "state": state}
        try:
            info["envelope"] = read_envelope(path)
            if state == "queue":
                info["next_attempt"] = path.stat().st_mtime
        except (OSError, CorruptRecord) as error:
            info["error"] = str(error)
        info["attempts"] = self.attempts(queue_id)
        if state == "hold":
            with contextlib.suppress(OSError, ValueError):
                note = self._dir("hold") / f"{queue_id}.reason.json"
                info["hold"] = json.loads(note.read_text())
        return info

    def requeue(self, queue_id: str) -> bool:
        """Make a queued or held message due now (`queue retry` / `queue release`)."""
        state = self.state_of(queue_id)
        if state not in ("queue", "hold"):
            return False
        path = self._path(state, queue_id)
        now = time.time()
        try:
            os.utime(path, (now, now))
            if state == "hold":
                os.replace(path, self._path("queue", queue_id))
                (self._dir("hold") / f"{queue_id}.reason.json").unlink(missing_ok=True)
        except FileNotFoundError:
            return False
        return True

    def delete(self, queue_id: str) -> bool:
        """Remove a queued, held or corrupt message for good (never one being delivered)."""
        for state in ("queue", "hold", "corrupt"):
            try:
                self._path(state, queue_id).unlink()
            except FileNotFoundError:
                continue
            (self._dir("hold") / f"{queue_id}.reason.json").unlink(missing_ok=True)
            self._meta(queue_id).unlink(missing_ok=True)
            return True
        return False

    # -- resource checks ---------------------------------------------------------------------

    def count(self, state: str) -> int:
        """How many messages are in one state."""
        with os.scandir(self._dir(state)) as entries:
            return sum(1 for entry in entries if entry.name.endswith(_SUFFIX))

    def census(self) -> dict[str, object]:
        """Messages per state and the age of the oldest one waiting (queue or active)."""
        states: dict[str, int] = {}
        oldest = ""
        for state in STATES:
            count = 0
            with os.scandir(self._dir(state)) as entries:
                for entry in entries:
                    if entry.name.endswith(_SUFFIX):
                        count += 1
                        if state in ("queue", "active") and (not oldest or entry.name < oldest):
                            oldest = entry.name
            states[state] = count
        born = queued_at(oldest) if oldest else None
        return {"states": states, "oldest_age": max(0.0, time.time() - born) if born else 0.0}

    def free_bytes(self) -> int:
        """Bytes available to this process on the spool's file system."""
        stats = os.statvfs(self.directory)
        return stats.f_bavail * stats.f_frsize

    def writable(self) -> bool:
        """Whether a file can be created in the spool right now."""
        return self._dir("tmp").is_dir() and os.access(self._dir("tmp"), os.W_OK | os.X_OK)
