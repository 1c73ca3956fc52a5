"""Reading spool files safely: never through a link, only regular files, every read bounded.

The spool directory is ours, but what is in it may not be: a restored backup, a hand edit, a
disk error or a hostile local user can leave a symbolic link (to a record elsewhere, to
`/dev/zero`), a FIFO, a directory named like a message, a head that claims a terabyte, or an
envelope of the wrong types. Each of those is a `CorruptRecord` here, never a hang, an
allocation of the claimed size, or a message delivered from outside the spool. Blocking I/O.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any, NamedTuple

from gateway.spool.body import FileBody
from gateway.spool.format import (
    MAGIC,
    MAX_ENVELOPE,
    TRAILER_SIZE,
    CorruptRecord,
    Envelope,
    parse_envelope,
    parse_trailer,
    split_head,
)

MAX_SIDE_FILE = 1024 * 1024  # an attempt history or a hold reason is a few KiB
_HEAD_LINE = 32  # "SGG1 " and the envelope's length in digits, with room


def open_regular(path: Path) -> int:
    """A read-only descriptor of `path` if it is a regular file (not through a link);
    `CorruptRecord` otherwise. FileNotFoundError when there is nothing there."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENXIO):  # a link; a socket
            raise CorruptRecord("a symbolic link or a socket, not a file") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(mode) else "a special file"
        raise CorruptRecord(f"{kind}, not a file")
    return fd


def _read_exactly(fd: int, count: int) -> bytes:
    """`count` bytes from `fd` in one buffer (fewer only at the end of the file)."""
    buffer = bytearray(count)
    view = memoryview(buffer)
    got = 0
    while got < count:
        read = os.readv(fd, [view[got:]])
        if read == 0:
            break
        got += read
    del view
    return bytes(buffer) if got == count else bytes(buffer[:got])


class Layout(NamedTuple):
    """Where a record's parts lie in its file."""

    message_offset: int
    message_size: int
    envelope_offset: int
    envelope_size: int


def _layout(fd: int, size: int) -> Layout:
    """The parts of a record file of `size` bytes, in either format; `CorruptRecord` when its
    lengths do not add up to its size."""
    if size >= TRAILER_SIZE:
        lengths = parse_trailer(os.pread(fd, TRAILER_SIZE, size - TRAILER_SIZE))
        if lengths is not None:
            message, envelope = lengths
            if envelope > MAX_ENVELOPE:
                raise CorruptRecord(f"the trailer claims a {envelope}-byte envelope")
            if message + envelope + TRAILER_SIZE != size:
                raise CorruptRecord("the trailer's lengths do not add up to the file's size")
            return Layout(0, message, message, envelope)
    first = os.pread(fd, _HEAD_LINE, 0)
    line, newline, _rest = first.partition(b"\n")
    if not newline or not line.startswith(MAGIC + b" "):
        raise CorruptRecord(
            "not a whole queue file: neither its head (SGG1) nor its trailer (SGG2) is there "
            "(cut short, or written to by hand)"
        )
    length = split_head(line)
    if length > MAX_ENVELOPE:
        raise CorruptRecord(f"the head claims a {length}-byte envelope")
    head = len(line) + 1
    return Layout(head + length, max(0, size - head - length), head, length)


def _open(path: Path, queue_id: str) -> tuple[int, Envelope, Layout]:
    """An open record: its descriptor, its envelope (checked against the layout) and layout."""
    fd = open_regular(path)
    try:
        layout = _layout(fd, os.fstat(fd).st_size)
        envelope = _envelope(os.pread(fd, layout.envelope_size, layout.envelope_offset), queue_id)
    except BaseException:
        os.close(fd)
        raise
    if envelope.size != layout.message_size:
        os.close(fd)
        raise CorruptRecord(
            f"message is {layout.message_size} bytes, envelope says {envelope.size}"
        )
    return fd, envelope, layout


def read_record(path: Path, queue_id: str) -> tuple[Envelope, bytes]:
    """Envelope and message of a queue file, complete and consistent, or `CorruptRecord`."""
    fd, envelope, layout = _open(path, queue_id)
    try:
        os.lseek(fd, layout.message_offset, os.SEEK_SET)
        message = _read_exactly(fd, envelope.size)
    finally:
        os.close(fd)
    if len(message) != envelope.size:
        raise CorruptRecord(f"message is {len(message)} bytes, envelope says {envelope.size}")
    return envelope, message


def open_body(path: Path, queue_id: str) -> tuple[Envelope, FileBody]:
    """Envelope and message of a queue file, the message left in the file and read as it is
    needed (the caller closes it)."""
    fd, envelope, layout = _open(path, queue_id)
    return envelope, FileBody(fd, layout.message_offset, envelope.size)


def read_envelope(path: Path, queue_id: str) -> Envelope:
    """The envelope of a queue file, without reading its message; `CorruptRecord` when the file
    is not a consistent record."""
    fd, envelope, _layout = _open(path, queue_id)
    os.close(fd)
    return envelope


def _envelope(data: bytes, queue_id: str) -> Envelope:
    envelope = parse_envelope(data)
    if envelope.queue_id != queue_id:
        raise CorruptRecord(f"its envelope names {envelope.queue_id!r}, not its file name")
    return envelope


def read_json(path: Path) -> Any:
    """A small JSON side file (attempt history, hold reason): None when it is missing, not a
    regular file, too large or not JSON."""
    try:
        fd = open_regular(path)
    except (OSError, CorruptRecord):
        return None
    try:
        data = os.read(fd, MAX_SIDE_FILE + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(data) > MAX_SIDE_FILE:
        return None
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None
