"""The on-disk record of one queued message.

A queue file (format SGG2) is the message exactly as received, then its envelope as JSON (see
`queue.model`), then a fixed-size trailer `\\nSGG2 <message length> <envelope length>\\n` (20 and
10 digits): the message is written as DATA arrives, and the envelope, whose size is known only
at the end, goes after it. Files of the first format (SGG1: `SGG1 <envelope length>\\n`, the
envelope, then the message) are still read. Either way the lengths must add up to the file's
size exactly, so a file that was cut short (by a disk error, or by hand) is recognised as
corrupt instead of being delivered truncated. Pure.
"""

from __future__ import annotations

import re

from gateway.errors import CorruptRecord
from gateway.queue.model import (
    Envelope,
    envelope_json,
    is_queue_id,
    new_queue_id,
    parse_envelope,
    queued_at,
)

__all__ = [
    "MAGIC",
    "MAX_ENVELOPE",
    "CorruptRecord",
    "Envelope",
    "decode",
    "encode",
    "encode_head",
    "encode_record",
    "encode_tail",
    "is_queue_id",
    "new_queue_id",
    "parse_envelope",
    "parse_trailer",
    "queued_at",
    "split_head",
]

MAGIC = b"SGG1"
MAX_ENVELOPE = 4 * 1024 * 1024  # 500 recipients of 254 characters are ~130 KiB of JSON
TRAILER_MAGIC = b"SGG2"
TRAILER_SIZE = 38  # b"\nSGG2 " + 20 digits + b" " + 10 digits + b"\n"
_TRAILER = re.compile(rb"\nSGG2 (\d{20}) (\d{10})\n")


def encode_head(envelope: Envelope) -> bytes:
    """The bytes of a queue file before the message."""
    header = envelope_json(envelope)
    return b"".join((MAGIC, b" ", str(len(header)).encode("ascii"), b"\n", header))


def encode(envelope: Envelope, message: bytes) -> bytes:
    """The bytes of a queue file in the first format (SGG1), as earlier versions wrote them."""
    return encode_head(envelope) + message


def encode_tail(envelope: Envelope) -> bytes:
    """What follows the message in a queue file (SGG2): the envelope and the trailer."""
    header = envelope_json(envelope)
    return header + b"\nSGG2 %020d %010d\n" % (envelope.size, len(header))


def encode_record(envelope: Envelope, message: bytes) -> bytes:
    """The bytes of a queue file as this version writes them (SGG2)."""
    return message + encode_tail(envelope)


def parse_trailer(trailer: bytes) -> tuple[int, int] | None:
    """(message length, envelope length) from a file's last `TRAILER_SIZE` bytes, or None when
    they are not an SGG2 trailer."""
    match = _TRAILER.fullmatch(trailer)
    return (int(match[1]), int(match[2])) if match else None


def split_head(first: bytes) -> int:
    """The envelope's length from a queue file's first line; `CorruptRecord` if it is none."""
    magic, _, length_text = first.partition(b" ")
    if magic != MAGIC or not length_text.isdigit():
        raise CorruptRecord("not a queue file")
    return int(length_text)


def decode(data: bytes) -> tuple[Envelope, bytes]:
    """Envelope and message from queue-file bytes (either format); `CorruptRecord` if it is not
    complete."""
    lengths = parse_trailer(data[-TRAILER_SIZE:])
    if lengths is not None:
        size, length = lengths
        if size + length + TRAILER_SIZE != len(data) or length > MAX_ENVELOPE:
            raise CorruptRecord("the trailer's lengths do not add up to the file's size")
        envelope = parse_envelope(data[size : size + length])
        if envelope.size != size:
            raise CorruptRecord(f"message is {size} bytes, envelope says {envelope.size}")
        return envelope, data[:size]
    first, newline, rest = data.partition(b"\n")
    if not newline:
        raise CorruptRecord("not a queue file")
    length = split_head(first)
    envelope = parse_envelope(rest[:length])
    message = rest[length:]
    if len(message) != envelope.size:
        raise CorruptRecord(f"message is {len(message)} bytes, envelope says {envelope.size}")
    return envelope, message
