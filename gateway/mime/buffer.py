"""What the MIME readers need of a message: read-only bytes with `len`, slices, `find` and
`rfind` — `bytes` itself, or a message read from its file piece by piece (`spool.body`), so a
150 MiB message is parsed and its attachments decoded without ever being whole in memory."""

from __future__ import annotations

from typing import Protocol


class Buffer(Protocol):
    """Read-only bytes."""

    def __len__(self) -> int: ...

    def __bytes__(self) -> bytes: ...

    def __getitem__(self, index: slice, /) -> bytes: ...

    def find(self, sub: bytes, start: int = 0, end: int | None = None, /) -> int: ...

    def rfind(self, sub: bytes, start: int = 0, end: int | None = None, /) -> int: ...
