"""Read an SMTP DATA section fast and safely, and pass it on as it arrives.

aiosmtpd reads DATA line by line (about 50 ms of CPU per MB) and refuses lines over 1,000
bytes, which breaks scanners that send whole PDFs with bare LF line endings. This reader takes
large chunks and finds the end of data with one C-level search, only ever on `<CRLF>.<CRLF>`:
bare-LF or bare-CR variants that other servers take as the end (SMTP smuggling) stay inside
the message. It removes dot-stuffing and turns bare LF line endings into CRLF, as Postfix's
`normalize` does, a chunk at a time (`Normalizer`), and hands each piece to a sink as soon as
it has it: a 100 MiB scan never sits whole in memory. Commands pipelined after the final dot go
back to the stream.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

END_OF_DATA = b"\r\n.\r\n"
CHUNK = 256 * 1024


class Sink(Protocol):
    """Where the message goes as it arrives."""

    async def write(self, data: bytes) -> None: ...


class Normalizer:
    """Dot-unstuffing and bare-LF normalisation of a DATA section, a piece at a time.

    Every line ends with CRLF (a bare LF is a line end, as Postfix's `normalize` reads it; a
    bare CR is left alone), and the transparency dot of every line that starts with one is
    removed (RFC 5321 4.5.2) — so devices that stuff dots after bare LFs are read right too. A
    piece that needs neither (most, and every base64 attachment) is passed on as it is.
    """

    def __init__(self) -> None:
        self._line_start = True  # the next byte out starts a line
        self._cr = False  # the last byte in was a CR (the LF of its CRLF may come next)

    def feed(self, data: bytes) -> bytes:
        """The normalised form of the next piece."""
        out = b""
        if self._cr and data[:1] == b"\n":  # the LF of a CRLF split between two pieces
            out, data, self._line_start, self._cr = b"\n", data[1:], True, False
        if not data:
            return out
        self._cr = data[-1:] == b"\r"
        if data.count(b"\n") != data.count(b"\r\n"):
            data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        line_start, self._line_start = self._line_start, data[-1:] == b"\n"
        if line_start and data[:1] == b".":
            data = data[1:]
        if b"\r\n." in data:
            data = data.replace(b"\r\n.", b"\r\n")
        return out + data if out else data


def unstuff_and_normalize(data: bytes | bytearray) -> bytes:
    """Message bytes from a whole DATA section (up to, without, the final `.CRLF`)."""
    return Normalizer().feed(bytes(data))


class _Collect:
    """A sink that keeps everything (for `read_data`)."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []

    async def write(self, data: bytes) -> None:
        self.pieces.append(data)


async def receive_data(
    reader: asyncio.StreamReader, limit: int, sink: Sink
) -> tuple[int | None, int]:
    """Read through the end of data, passing the normalised message to `sink` as it comes:
    (message size, or None when it is over `limit`; bytes received).

    An oversized message is read to its end and no more of it goes to the sink, so memory
    stays bounded and the session can go on (the caller drops what the sink has).
    `asyncio.IncompleteReadError` if the client hangs up.
    """
    normalizer = Normalizer()
    size = 0  # message bytes passed to the sink, after normalisation
    raw = 0  # message bytes received, before (the size limit counts these, as SIZE does)
    received = 0
    too_big = False
    # The stream seen so far ends with `held`: the end marker may straddle two reads. At first
    # it holds the CRLF that ended the DATA command line (not part of the message), so an empty
    # message (".\r\n" at once) ends the same way as any other.
    held, virtual = b"\r\n", 2
    while True:
        chunk = await reader.read(CHUNK)
        if not chunk:
            raise asyncio.IncompleteReadError(b"", None)
        received += len(chunk)
        window = held + chunk
        found = window.find(END_OF_DATA)
        if found >= 0:
            piece = window[virtual : found + 2]  # through the CRLF that ends the last line
            rest = window[found + len(END_OF_DATA) :]
            if rest:
                # Pipelined commands after the dot: put them back in front of the stream.
                # (aiosmtpd itself works on the reader's buffer the same way for STARTTLS.)
                reader._buffer[0:0] = rest  # type: ignore[attr-defined]
            received -= len(rest)
        else:
            keep = min(len(window), len(END_OF_DATA) - 1)
            piece = window[virtual : len(window) - keep]
            held, virtual = window[len(window) - keep :], max(0, virtual - (len(window) - keep))
        raw += len(piece)
        if raw > limit:
            too_big = True
        if piece and not too_big:
            normalised = normalizer.feed(piece)
            size += len(normalised)
            if normalised:
                await sink.write(normalised)
        if found >= 0:
            return (None if too_big else size), received


async def read_data(reader: asyncio.StreamReader, limit: int) -> tuple[bytes | None, int]:
    """Read through the end of data: (message, bytes received); message None when over `limit`.
    The whole message in memory: for tests and tools; the SMTP side streams (`receive_data`)."""
    sink = _Collect()
    size, received = await receive_data(reader, limit, sink)
    return (None if size is None else b"".join(sink.pieces)), received
