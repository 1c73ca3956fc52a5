"""The MIME structure of a raw message as offsets into its bytes, and part bodies decoded.

`parse_tree` reads only header sections and boundary lines: each part knows where its header
and body lie in the message, so nothing is copied, and a 40 MB attachment can be decoded in
pieces (`iter_decoded`) straight from the message as it was received. Header fields are parsed
by the standard library (RFC 2047/2231 and all), part by part.

Boundaries follow RFC 2046 as mail readers apply it: a delimiter is a line that starts with
`--boundary`, optionally followed by `--` (the end) and blanks; the line break before it belongs
to the delimiter; a missing close delimiter ends the part at the end of its parent. A multipart
without a usable boundary is read as one leaf. Pure.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser

from gateway.mime.buffer import Buffer

MAX_DEPTH = 60  # deeper nesting is read as a leaf (the SMTP side refuses far less already)
_HEADER_PARSER = BytesHeaderParser(policy=policy.default)
_BASE64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_NOT_BASE64 = bytes(sorted(set(range(256)) - set(_BASE64)))


@dataclass(frozen=True, slots=True)
class Part:
    """One MIME entity: where its header and body lie in the message, and its children."""

    headers: EmailMessage = field(repr=False)  # the header fields only
    start: int  # first byte of the header section
    body_start: int
    body_end: int
    content_type: str  # lower-case type/subtype, defaulted as RFC 2045/2046 say
    children: tuple[Part, ...] = ()

    @property
    def is_multipart(self) -> bool:
        return bool(self.children)

    @property
    def transfer_encoding(self) -> str:
        value = self.headers.get("Content-Transfer-Encoding")
        return str(value).strip().lower() if value is not None else "7bit"

    def leaves(self) -> Iterator[Part]:
        """The leaf parts in document order (an attached message is one leaf)."""
        if self.children:
            for child in self.children:
                yield from child.leaves()
        else:
            yield self


def parse_tree(data: Buffer, start: int = 0, end: int | None = None) -> Part:
    """The MIME tree of the message in `data[start:end]`."""
    return _parse(data, start, len(data) if end is None else end, "text/plain", 0)


def parse_headers(header_section: bytes) -> EmailMessage:
    """The fields of a header section (none, if the library cannot read it at all)."""
    try:
        headers = _HEADER_PARSER.parsebytes(header_section)
    except Exception:  # noqa: BLE001 - a header the library chokes on must not stop delivery
        return EmailMessage(policy=policy.default)
    if not isinstance(headers, EmailMessage):  # pragma: no cover - policy.default makes these
        return EmailMessage(policy=policy.default)
    return headers


def _parse(data: Buffer, start: int, end: int, default_type: str, depth: int) -> Part:
    body_start = _header_end(data, start, end)
    headers = parse_headers(data[start:body_start])
    content_type = _content_type(headers, default_type)
    children: tuple[Part, ...] = ()
    if content_type.startswith("multipart/") and depth < MAX_DEPTH:
        boundary = _boundary(headers)
        if boundary:
            child_default = "message/rfc822" if content_type == "multipart/digest" else "text/plain"
            spans = _split(data, body_start, end, b"--" + boundary)
            children = tuple(_parse(data, a, b, child_default, depth + 1) for a, b in spans)
        if not children:
            content_type = "text/plain"  # as mail readers show a multipart they cannot split
    return Part(headers, start, body_start, end, content_type, children)


def _header_end(data: Buffer, start: int, end: int) -> int:
    """Where the body begins: after the blank line that ends the header section, or at the
    first line that is neither a field nor a continuation (a missing blank line)."""
    position = start
    while position < end:
        newline = data.find(b"\n", position, end)
        line_end = end if newline < 0 else newline + 1
        line = data[position:line_end]
        if line in (b"\r\n", b"\n"):
            return line_end
        if position == start or line[:1] not in (b" ", b"\t"):
            colon = line.find(b":")
            name = line[:colon] if colon > 0 else b""
            if not name or any(byte <= 32 or byte > 126 for byte in name):
                return position
        position = line_end
    return end


def _content_type(headers: EmailMessage, default_type: str) -> str:
    if headers.get("Content-Type") is None:
        return default_type
    try:
        value = headers.get_content_type()
    except Exception:  # noqa: BLE001 - the library raises anything on some inputs; such a value is skipped
        return "text/plain"
    # A Content-Type the library could not read falls back to text/plain; keep the default
    # of the context (an RFC 822 part inside a digest) only when none was given.
    return value.lower()


def _boundary(headers: EmailMessage) -> bytes:
    try:
        boundary = headers.get_boundary()
    except Exception:  # noqa: BLE001 - the library raises anything on some inputs; such a value is skipped
        return b""
    if not boundary:
        return b""
    boundary = boundary.rstrip()  # RFC 2046: a boundary may start, but not end, with a blank
    try:
        return boundary.encode("ascii")
    except UnicodeEncodeError:
        return boundary.encode("utf-8", "surrogateescape")


def _split(data: Buffer, start: int, end: int, delimiter: bytes) -> list[tuple[int, int]]:
    """The (start, end) spans of the body parts between delimiter lines in `data[start:end]`."""
    spans: list[tuple[int, int]] = []
    part_start: int | None = None
    position = start
    while position < end:
        found = data.find(delimiter, position, end)
        if found < 0:
            break
        position = found + len(delimiter)
        if found != start and data[found - 1 : found] != b"\n":
            continue  # not at the start of a line
        after = found + len(delimiter)
        closing = data[after : after + 2] == b"--"
        cursor = after + 2 if closing else after
        while cursor < end and data[cursor : cursor + 1] in (b" ", b"\t"):
            cursor += 1
        if cursor < end and data[cursor : cursor + 1] not in (b"\r", b"\n"):
            continue  # the boundary is only the start of a longer line
        line_end = data.find(b"\n", cursor, end)
        line_end = end if line_end < 0 else line_end + 1
        if part_start is not None:
            spans.append((part_start, _before_line_break(data, part_start, found)))
        if closing:
            return spans
        part_start = line_end
        position = line_end
    if part_start is not None and part_start <= end:
        spans.append((part_start, end))  # no close delimiter: the part runs to the end
    return spans


def _before_line_break(data: Buffer, start: int, delimiter: int) -> int:
    """The end of a part: the line break before its delimiter belongs to the delimiter."""
    if delimiter > start and data[delimiter - 1 : delimiter] == b"\n":
        delimiter -= 1
        if delimiter > start and data[delimiter - 1 : delimiter] == b"\r":
            delimiter -= 1
    return delimiter


# --- bodies ---------------------------------------------------------------------------------


def raw_body(data: Buffer, part: Part) -> bytes:
    """The part's body as it appears in the message (still transfer-encoded)."""
    return data[part.body_start : part.body_end]


def decoded(data: Buffer, part: Part) -> bytes:
    """The part's body with its Content-Transfer-Encoding undone."""
    return b"".join(iter_decoded(data, part, 1 << 30))


def iter_decoded(data: Buffer, part: Part, size: int) -> Iterator[bytes]:
    """The decoded body in pieces of exactly `size` bytes (the last may be shorter), reading
    the message a few MB at a time."""
    encoding = part.transfer_encoding
    if encoding == "base64":
        pieces = _base64_pieces(data, part.body_start, part.body_end)
    elif encoding == "quoted-printable":
        pieces = _qp_pieces(data, part.body_start, part.body_end)
    else:
        pieces = _raw_pieces(data, part.body_start, part.body_end)
    pending = bytearray()
    for piece in pieces:
        pending += piece
        while len(pending) >= size:
            yield bytes(pending[:size])
            del pending[:size]
    if pending:
        yield bytes(pending)


def decoded_size(data: Buffer, part: Part) -> int:
    """The length of the decoded body, found without keeping it."""
    if part.transfer_encoding == "base64":
        return sum(len(piece) for piece in _base64_pieces(data, part.body_start, part.body_end))
    if part.transfer_encoding == "quoted-printable":
        return sum(len(piece) for piece in _qp_pieces(data, part.body_start, part.body_end))
    return part.body_end - part.body_start


_READ = 1024 * 1024  # encoded bytes looked at per step


def _raw_pieces(data: Buffer, start: int, end: int) -> Iterator[bytes]:
    for offset in range(start, end, _READ):
        yield data[offset : min(offset + _READ, end)]


def _base64_pieces(data: Buffer, start: int, end: int) -> Iterator[bytes]:
    """Decode base64 leniently, as mail readers do: characters outside the alphabet are
    skipped, decoding stops at padding, and a dangling last character is dropped."""
    carry = b""
    for offset in range(start, end, _READ):
        chunk = data[offset : min(offset + _READ, end)]
        padding = chunk.find(b"=")
        clean = carry + (chunk if padding < 0 else chunk[:padding]).translate(None, _NOT_BASE64)
        usable = len(clean) - len(clean) % 4
        if usable:
            yield binascii.a2b_base64(clean[:usable])
        carry = clean[usable:]
        if padding >= 0:
            break
    if len(carry) >= 2:
        yield binascii.a2b_base64(carry + b"=" * (4 - len(carry)))


def _qp_pieces(data: Buffer, start: int, end: int) -> Iterator[bytes]:
    position = start
    while position < end:
        stop = min(position + _READ, end)
        if stop < end:  # cut after a line break, so no =XX or soft break is split
            newline = data.rfind(b"\n", position, stop)
            stop = newline + 1 if newline > position else stop
        yield binascii.a2b_qp(data[position:stop])
        position = stop
