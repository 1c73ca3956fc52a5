"""Fuzz target `data_reader`: the chunked SMTP DATA reader against a plain reference.

`gateway.smtp.data.read_data` reads an `asyncio.StreamReader` fed the input in chunks cut where
the input's first bytes say, so the end marker straddles reads every way; its message, byte
count and the bytes left in the stream (pipelined commands) must equal the reference below,
which does what the module docstring says in the simplest way: data ends at the first
`<CRLF>.<CRLF>` (counting the CRLF that ended the 354 reply), bare LF line ends become CRLF,
then one leading dot is removed from every line; over `limit` bytes, no message.
`unstuff_and_normalize` is checked against the same reference on the raw input.

Input layout: byte 0 = cut count (bits 0-2) and "small limit" (bit 3); then a 2-byte limit if
bit 3 is set; then a 2-byte offset per cut; the rest is the stream.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping

from gateway.smtp.data import END_OF_DATA, read_data, unstuff_and_normalize

MAX_LEN = 16 * 1024
LARGE_LIMIT = 10_000_000
_loop: asyncio.AbstractEventLoop | None = None

Outcome = tuple[bytes | None, int, bytes] | None  # message, bytes received, rest; None: hang-up


def one_input(data: bytes) -> None:
    """Read the stream in `data` both ways; raise if they differ."""
    chunks, limit = _layout(data)
    stream = b"".join(chunks)
    expected = reference_read(stream, limit)
    actual = _event_loop().run_until_complete(_read(chunks, limit))
    if actual != expected:
        raise AssertionError(
            f"read_data({chunks!r}, limit={limit}) gave {actual!r}, the reference {expected!r}"
        )
    for raw in (stream, bytearray(stream)):
        if unstuff_and_normalize(raw) != reference_unstuff(bytes(raw)):
            raise AssertionError(f"unstuff_and_normalize({raw!r}) differs from the reference")


def _layout(data: bytes) -> tuple[list[bytes], int]:
    """The chunks to feed and the size limit, as the input's first bytes choose them."""
    if not data:
        return [], LARGE_LIMIT
    cuts, position = data[0] & 7, 1
    limit = LARGE_LIMIT
    if data[0] & 8:
        limit = int.from_bytes(data[1:3], "big")
        position = 3
    ends = range(position, position + 2 * cuts, 2)
    offsets = [int.from_bytes(data[i : i + 2], "big") for i in ends]
    stream = data[position + 2 * cuts :]
    points = sorted({offset % (len(stream) + 1) for offset in offsets} | {0, len(stream)})
    return [stream[a:b] for a, b in itertools.pairwise(points)], limit


def reference_unstuff(raw: bytes) -> bytes:
    """Every LF ends a line, which then ends in CRLF; one leading dot off every line."""
    lines = raw.split(b"\n")
    normalised = b"\r\n".join([line.removesuffix(b"\r") for line in lines[:-1]] + lines[-1:])
    return b"\r\n".join(
        line[1:] if line.startswith(b".") else line for line in normalised.split(b"\r\n")
    )


def reference_read(stream: bytes, limit: int) -> Outcome:
    """What read_data must return for `stream`: None if it never ends."""
    found = (b"\r\n" + stream).find(END_OF_DATA)
    if found < 0:
        return None
    message = stream[:found]  # through the CRLF that ends the last line
    received = found + len(END_OF_DATA) - 2
    kept = reference_unstuff(message) if len(message) <= limit else None
    return kept, received, stream[received:]


async def _read(chunks: list[bytes], limit: int) -> Outcome:
    reader = asyncio.StreamReader(limit=1001)  # aiosmtpd's line limit, as a session has it
    task = asyncio.ensure_future(read_data(reader, limit))
    for chunk in chunks:
        reader.feed_data(chunk)
        # Let the reader take this chunk before the next arrives: one read per chunk.
        while reader._buffer and not task.done():  # type: ignore[attr-defined]  # noqa: ASYNC110 - polls a StreamReader buffer the target fills itself
            await asyncio.sleep(0)
    reader.feed_eof()
    try:
        message, received = await task
    except asyncio.IncompleteReadError:
        return None
    return message, received, await reader.read()


def _event_loop() -> asyncio.AbstractEventLoop:
    global _loop  # noqa: PLW0603 - one loop per process: a new one per input costs more than the test
    if _loop is None:
        _loop = asyncio.new_event_loop()
    return _loop


# --- seeds ----------------------------------------------------------------------------------


def stuffed(message: bytes) -> bytes:
    """What a client sends for `message`: dots doubled at line starts, then `.CRLF`."""
    lines = message.split(b"\r\n")
    body = b"\r\n".join(b"." + line if line.startswith(b".") else line for line in lines)
    return body + (b"" if body.endswith(b"\r\n") or not body else b"\r\n") + b".\r\n"


_HAND_WRITTEN = {
    "empty-message": b"\x00.\r\n",
    "lone-dot-line": b"\x02\x00\x03\x00\x04a\r\n..\r\nb\r\n.\r\nQUIT\r\n",
    "smuggling-variants": b"\x03\x00\x05\x00\x09\x00\x0done\n.\nMAIL\r.\r\n.\r\n.\r\nRSET\r\n",
    "bare-lf-scan": b"\x01\x00\x10Subject: scan\n\n%PDF-1.7\n.hidden\nend\r\n.\r\n",
    "small-limit": b"\x0b\x00\x10\x00\x05\x00\x0c\x00\x0eaaaaaaaa\r\n.\r\nNOOP\r\n",
    "over-limit": b"\x0a\x00\x04\x00\x05\x00\x06aaaaaaaa\r\n.\r\nNOOP\r\n",
    "hang-up": b"\x01\x00\x02no end of data\r\n.\n",
}


def seeds(messages: Mapping[str, bytes]) -> dict[str, bytes]:
    """A few test messages as a client sends them (cut at three places), and hand-written
    streams."""
    found = {}
    for name, data in sorted(messages.items(), key=lambda item: len(item[1]))[:12]:
        stream = stuffed(data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")) + b"QUIT\r\n"
        cuts = b"".join(n.to_bytes(2, "big") for n in (1, len(stream) // 2, len(stream) - 4))
        found[f"eml-{name}"] = bytes([3]) + cuts + stream
    return {**found, **_HAND_WRITTEN}
