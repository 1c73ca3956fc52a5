"""A message read from its file a piece at a time: the `Buffer` the MIME readers and the
large-message path work on, so delivering a 150 MiB message never holds it whole in memory.

Reads go through `os.pread` on a descriptor this object owns (a rename or unlink of the file
does not disturb it), a block at a time, with the last block kept: a parser walking forwards
reads each block once. Blocking: callers on the event loop use it from a thread.
"""

from __future__ import annotations

import os

BLOCK = 1024 * 1024


class FileBody:
    """`size` bytes of an open file from `offset` on."""

    def __init__(self, fd: int, offset: int, size: int, *, block: int = BLOCK) -> None:
        self._step = block
        self._fd = fd
        self._offset = offset
        self._size = size
        self._block_start = -1
        self._block = b""

    def __len__(self) -> int:
        return self._size

    def close(self) -> None:
        """Close the descriptor (once; later reads raise ValueError)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._block = b""

    def _read(self, start: int, end: int) -> bytes:
        """Bytes [start, end) of the body (clamped to it)."""
        start, end = max(0, start), min(self._size, end)
        if end <= start:
            return b""
        if self._fd < 0:
            raise ValueError("the message body was closed")
        block_end = self._block_start + len(self._block)
        if self._block_start <= start and end <= block_end:
            return self._block[start - self._block_start : end - self._block_start]
        step = self._step
        if end - start <= step:  # read (and keep) the block it starts in, and the next
            self._block_start = start - start % step
            self._block = self._pread(
                self._block_start, min(self._size, self._block_start + 2 * step)
            )
            return self._block[start - self._block_start : end - self._block_start]
        return self._pread(start, end)

    def _pread(self, start: int, end: int) -> bytes:
        parts = []
        position = start
        while position < end:
            piece = os.pread(self._fd, end - position, self._offset + position)
            if not piece:
                raise OSError(f"the message file ended at {position} of {self._size} bytes")
            parts.append(piece)
            position += len(piece)
        return b"".join(parts)

    def __getitem__(self, index: slice, /) -> bytes:
        start, stop, step = index.indices(self._size)
        if step != 1:
            raise ValueError("FileBody slices take no step")
        return self._read(start, stop)

    def __bytes__(self) -> bytes:
        return self._read(0, self._size)

    def _bounds(self, start: int, end: int | None) -> tuple[int, int] | None:
        """`start` and `end` as bytes.find reads them; None when start is past the end."""
        size = self._size
        end = size if end is None else (max(end + size, 0) if end < 0 else min(end, size))
        start = max(start + size, 0) if start < 0 else start
        return None if start > size else (start, end)

    def find(self, sub: bytes, start: int = 0, end: int | None = None, /) -> int:
        bounds = self._bounds(start, end)
        if bounds is None:
            return -1
        start, end = bounds
        if not sub:
            return start if start <= end else -1
        overlap = len(sub) - 1
        position = start
        while position < end:
            stop = min(end, position + self._step)
            window = self._read(position, min(end, stop + overlap))
            found = window.find(sub)
            if found >= 0 and position + found + len(sub) <= end:
                return position + found
            position = stop
        return -1

    def rfind(self, sub: bytes, start: int = 0, end: int | None = None, /) -> int:
        bounds = self._bounds(start, end)
        if bounds is None:
            return -1
        start, end = bounds
        if not sub:
            return end if start <= end else -1
        overlap = len(sub) - 1
        stop = end
        while stop > start:
            position = max(start, stop - self._step)
            window = self._read(position, min(end, stop + overlap))
            found = window.rfind(sub)
            if found >= 0:
                return position + found
            stop = position
        return -1
