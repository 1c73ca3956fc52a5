"""Read an SMTP DATA section fast and safely.

aiosmtpd reads DATA line by line (about 50 ms of CPU per MB) and refuses lines over 1,000
bytes, which breaks scanners that send whole PDFs with bare LF line endings. This reader takes
large chunks and finds the end of data with one C-level search, only ever on `<CRLF>.<CRLF>`:
bare-LF or bare-CR variants that other servers take as the end (SMTP smuggling) stay inside
the message. Then it removes dot-stuffing and turns bare LF line endings into CRLF, as
Postfix's `normalize` does. Commands pipelined after the final dot go back to the stream.
"""

from __future__ import annotations

import asyncio

END_OF_DATA = b"\r\n.\r\n"
CHUNK = 256 * 1024


def unstuff_and_normalize(data: bytes | bytearray) -> bytes:
    """Message bytes from a DATA section (up to, without, the final `.CRLF`).

    Ends every line with CRLF (a bare LF is a line end, as Postfix's `normalize` reads it; a
    bare CR is left alone), then removes the transparency dot from every line that starts with
    one (RFC 5321 4.5.2) — so devices that stuff dots after bare LFs are read right too.
    A section that needs neither (most, and every base64 attachment) is copied once, not
    rebuilt: a 40 MB message must not cost four times its size.
    """
    if data.count(b"\n") != data.count(b"\r\n"):
        data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if data.startswith(b".") or data.find(b"\r\n.") >= 0:
        data = (b"\r\n" + data).replace(b"\r\n.", b"\r\n")[2:]
    return bytes(data)


async def read_data(reader: asyncio.StreamReader, limit: int) -> tuple[bytes | None, int]:
    """Read through the end of data: (message, bytes received); message None when over `limit`.

    Chunks are kept as they arrive and joined once at the end, so a message costs its size
    twice at most, briefly (a growing buffer would cost more). An oversized message is read to
    its end and dropped as it comes, so memory stays bounded and the session can go on.
    `asyncio.IncompleteReadError` if the client hangs up.
    """
    chunks: list[bytes] = []
    size = 0  # bytes kept in `chunks`
    received = 0
    too_big = False
    # The stream seen so far ends with these bytes; a leading CRLF stands for the end of the
    # 354 line, so an empty message (".\r\n" at once) ends the same way as any other.
    before = b"\r\n"
    while True:
        chunk = await reader.read(CHUNK)
        if not chunk:
            raise asyncio.IncompleteReadError(b"".join(chunks), None)
        received += len(chunk)
        window = before + chunk  # the end marker may straddle two reads
        found = window.find(END_OF_DATA)
        if found >= 0:
            at = found - len(before)  # where the marker starts in `chunk` (< 0: before it)
            break
        if not too_big:
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                too_big = True
                chunks, size = [], 0
        before = window[-(len(END_OF_DATA) - 1) :]
    rest = chunk[at + len(END_OF_DATA) :]
    if rest:
        # Pipelined commands after the dot: put them back in front of the stream. (aiosmtpd
        # itself works on the reader's buffer the same way for STARTTLS.)
        reader._buffer[0:0] = rest  # type: ignore[attr-defined]
    received -= len(rest)
    # The message is everything before the marker plus the CRLF that ends its last line.
    length = size + at + 2
    if too_big or length > limit:
        return None, received
    if length >= size:
        chunks.append(chunk[: length - size])
    else:
        while chunks and size - len(chunks[-1]) >= length:
            size -= len(chunks.pop())
        if chunks:
            chunks[-1] = chunks[-1][: len(chunks[-1]) - (size - length)]
    data = b"".join(chunks)
    del chunks, chunk
    return unstuff_and_normalize(data), received
