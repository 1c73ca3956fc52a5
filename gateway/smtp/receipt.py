"""A message arriving in DATA: written into the queue as it comes, with what the checks at its
end need kept aside — the header section (at most `smtp.max_header_size` and a little), the
count of multipart containers, the size — so the checks never need the whole message.

If the queue cannot take more (a full disk), the rest of DATA is still read (and dropped) so the
client hears `452` at the end rather than a broken connection.
"""

from __future__ import annotations

import structlog

from gateway.errors import SpoolError
from gateway.mime.headers import header_section
from gateway.policy import MultipartCounter
from gateway.queue.base import MessageWriter

log = structlog.get_logger("gateway.smtp")


class Receipt:
    """The sink DATA is read into (see `smtp.data.receive_data`)."""

    def __init__(self, writer: MessageWriter, max_header: int) -> None:
        self.writer = writer
        self._keep = max_header + 8  # enough to tell a header section over the limit
        self._head = bytearray()
        self._counter = MultipartCounter()
        self.size = 0
        self.failure: SpoolError | None = None  # the queue could not take it

    async def write(self, data: bytes) -> None:
        """The next normalised piece of the message."""
        self.size += len(data)
        if len(self._head) < self._keep:
            self._head += data[: self._keep - len(self._head)]
        self._counter.feed(data)
        if self.failure is None:
            try:
                await self.writer.write(data)
            except SpoolError as error:
                self.failure = error
                await self.abort()

    @property
    def header_section(self) -> bytes:
        """The header section (all of what was kept when no blank line came in time: then it
        is over the limit, and refused as such)."""
        return header_section(bytes(self._head))

    @property
    def multipart_count(self) -> int:
        """Multipart containers in the whole message."""
        return self._counter.count

    async def abort(self) -> None:
        """Drop the message (refused, too big, or the client left). Never raises."""
        try:
            await self.writer.abort()
        except SpoolError as error:  # the queue is away: what was written is swept later
            log.warning("partial_message_left", reason=str(error))
        except Exception as error:  # noqa: BLE001 - a leftover tmp/ file is removed at the next start
            log.warning("partial_message_left", error_type=type(error).__name__)
