"""Writing into the spool durably: a record as it arrives (`RecordWriter`), a shared
directory fsync (`GroupSync`), and small files replaced atomically. Blocking."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from gateway.errors import SpoolError
from gateway.queue.model import Envelope
from gateway.spool.format import encode_tail

if TYPE_CHECKING:
    from gateway.spool.store import Spool


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class GroupSync:
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
                    fsync_directory(self._directory)
                finally:
                    self._condition.acquire()
                    self._running = False
                    self._condition.notify_all()
                self._completed = covered
                self.syncs += 1


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text`; on failure (a full disk) nothing is left behind."""
    partial = path.with_name(path.name + ".tmp")
    try:
        partial.write_text(text)
        os.replace(partial, path)
    except OSError:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise


class RecordWriter:
    """One message being written into tmp/ as it arrives; `commit` makes it a queued record
    (message, envelope, trailer: `format`), durable before it returns. Blocking."""

    def __init__(self, spool: Spool, queue_id: str) -> None:
        self.queue_id = queue_id
        self._spool = spool
        self._partial = spool.path("tmp", queue_id)
        self._fd: int | None = None
        self.size = 0

    def write(self, data: bytes) -> None:
        """Append message bytes. `SpoolError` (and nothing left behind) if they cannot be."""
        self._append(data)
        self.size += len(data)

    def _append(self, data: bytes) -> None:
        try:
            if self._fd is None:
                self._fd = os.open(self._partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as error:
            self._fail(error)

    def commit(
        self, envelope: Envelope, next_attempt: float | None = None, *, state: str = "queue"
    ) -> None:
        """Write the envelope and trailer, fdatasync, rename into queue/ (or, for a message
        moved from another queue, hold/), fsync the directory (shared, see `GroupSync`).
        `SpoolError` if it cannot: nothing is queued then."""
        if envelope.size != self.size:
            raise AssertionError(f"{self.size} bytes written, envelope says {envelope.size}")
        self._append(encode_tail(envelope))
        fd, self._fd = self._fd, None
        assert fd is not None
        try:
            try:
                os.fdatasync(fd)  # data and size; the name is made durable by the dir fsync
            finally:
                os.close(fd)
            if next_attempt is not None:
                os.utime(self._partial, (time.time(), next_attempt))
            os.rename(self._partial, self._spool.path(state, self.queue_id))
            if state == "queue":
                self._spool.queue_sync()
            else:
                fsync_directory(self._spool.dir(state))
        except OSError as error:
            self._fail(error)

    def abort(self) -> None:
        """Drop what was written (a refused or broken transaction)."""
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            if fd is not None:
                os.close(fd)
            self._partial.unlink(missing_ok=True)

    def _fail(self, error: OSError) -> NoReturn:
        self.abort()
        reason = "spool disk is full" if error.errno == errno.ENOSPC else error.strerror
        raise SpoolError(f"cannot store message: {reason}") from None
