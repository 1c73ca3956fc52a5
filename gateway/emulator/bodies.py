"""Reading request bodies with Graph's size limit, without resetting the client's connection.

A body over the limit is still read to the end (and thrown away, up to a generous cap) before
the 413 goes out: answering while the client is still writing makes many HTTP clients report
"connection reset" instead of the status, which is not what the real service's front end does.
"""

from __future__ import annotations

from aiohttp import web

DRAIN_CAP = 256 * 1024 * 1024  # beyond this a client is abusive; stop reading
_CHUNK = 256 * 1024


class BodyTooLarge(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(f"request body of {size} bytes is too large")
        self.size = size


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, or BodyTooLarge once it is known to exceed `limit` bytes."""
    parts: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(_CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size <= limit:
            parts.append(chunk)
        elif size > DRAIN_CAP:
            break
    if size > limit:
        raise BodyTooLarge(size)
    return b"".join(parts)


async def discard_body(request: web.Request) -> None:
    """Read and drop whatever the client sends, so an early answer reaches it intact."""
    drained = 0
    while drained <= DRAIN_CAP:
        chunk = await request.content.read(_CHUNK)
        if not chunk:
            return
        drained += len(chunk)
