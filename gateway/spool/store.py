"""The spool directory: durable writes, leases, and recovery after a crash.

Layout under the spool directory::

    tmp/      files being written (removed at start-up: never acknowledged)
    queue/    complete messages waiting for delivery
    active/   messages a worker is delivering (moved back to queue/ at start-up)
    hold/     messages that failed permanently, each with a .reason.json
    corrupt/  files that are not complete records, kept for inspection
    lock      held while a daemon uses the spool

A message is written to tmp/, fsynced, renamed into queue/ and the directory fsynced before
`store` returns; only then may the SMTP side answer 250. Every state change is a rename, which
is atomic, so a crash leaves each message in exactly one state. All methods block: callers on
the event loop run them in a thread.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import SpoolError
from gateway.spool.format import CorruptRecord, Envelope, decode, encode, new_queue_id

_STATES = ("tmp", "queue", "active", "hold", "corrupt")
_SUFFIX = ".msg"


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """A message read back from the spool."""

    envelope: Envelope
    message: bytes

    @property
    def queue_id(self) -> str:
        """The queue ID the client was given with 250."""
        return self.envelope.queue_id


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """One spool directory, owned by one daemon at a time."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock_fd: int | None = None

    def _dir(self, state: str) -> Path:
        return self.directory / state

    def open(self) -> None:
        """Create the layout if needed and take the lock; `SpoolError` if another daemon has it."""
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            for state in _STATES:
                self._dir(state).mkdir(mode=0o700, exist_ok=True)
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

    def recover(self) -> list[str]:
        """After a start or crash: drop partial writes, requeue leased messages; queued IDs.

        Whatever was being delivered when the process stopped goes back to the queue, so it
        is delivered again (at least once, never lost).
        """
        for leftover in self._dir("tmp").iterdir():
            leftover.unlink(missing_ok=True)
        for leased in self._dir("active").glob("*" + _SUFFIX):
            os.replace(leased, self._dir("queue") / leased.name)
        _fsync_directory(self._dir("queue"))
        return sorted(path.name[: -len(_SUFFIX)] for path in self._dir("queue").glob("*" + _SUFFIX))

    def store(
        self,
        *,
        mail_from: str,
        rcpt_tos: tuple[str, ...],
        message: bytes,
        client: str,
        peer: str,
        listener: str,
    ) -> str:
        """Write a message durably and return its queue ID. `SpoolError` if it cannot."""
        queue_id = new_queue_id()
        envelope = Envelope(
            queue_id, mail_from, rcpt_tos, time.time(), client, peer, listener, len(message)
        )
        name = queue_id + _SUFFIX
        partial = self._dir("tmp") / name
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(encode(envelope, message))
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(partial, self._dir("queue") / name)
            _fsync_directory(self._dir("queue"))
        except OSError as error:
            partial.unlink(missing_ok=True)
            reason = "spool disk is full" if error.errno == errno.ENOSPC else error.strerror
            raise SpoolError(f"cannot store message: {reason}") from None
        return queue_id

    def lease(self, queue_id: str) -> QueuedMessage | None:
        """Move a queued message to active/ and read it; None if it is no longer queued.

        A file that is not a complete record goes to corrupt/ and None is returned.
        """
        name = queue_id + _SUFFIX
        active = self._dir("active") / name
        try:
            os.rename(self._dir("queue") / name, active)
        except FileNotFoundError:
            return None
        data = active.read_bytes()
        try:
            envelope, message = decode(data)
        except CorruptRecord:
            os.replace(active, self._dir("corrupt") / name)
            raise
        return QueuedMessage(envelope, message)

    def release(self, queue_id: str) -> None:
        """Put a leased message back in the queue (delivery will be tried again)."""
        name = queue_id + _SUFFIX
        os.replace(self._dir("active") / name, self._dir("queue") / name)

    def complete(self, queue_id: str) -> None:
        """Forget a delivered message."""
        (self._dir("active") / (queue_id + _SUFFIX)).unlink(missing_ok=True)

    def hold(self, queue_id: str, reason: dict[str, object]) -> None:
        """Park a leased message that cannot be delivered, with the reason beside it."""
        name = queue_id + _SUFFIX
        note = self._dir("hold") / f"{queue_id}.reason.json"
        note.write_text(json.dumps({**reason, "held_at": time.time()}, indent=2) + "\n")
        os.replace(self._dir("active") / name, self._dir("hold") / name)
        _fsync_directory(self._dir("hold"))

    def count(self, state: str) -> int:
        """How many messages are in one state (queue, active, hold, corrupt)."""
        return sum(1 for _ in self._dir(state).glob("*" + _SUFFIX))

    def writable(self) -> bool:
        """Whether a file can be created in the spool right now."""
        return os.access(self._dir("tmp"), os.W_OK | os.X_OK)
