"""The on-disk record of one queued message, and queue IDs.

A queue file is `SGG1 <envelope length>\\n`, the envelope as JSON, then the message exactly as
received. The envelope records the message length, so a file that was cut short (by a disk
error, or by hand) is recognised as corrupt instead of being delivered truncated. Pure.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass

MAGIC = b"SGG1"


@dataclass(frozen=True, slots=True)
class Envelope:
    """What the SMTP session told us about a message, kept with it."""

    queue_id: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    received_at: float
    client: str
    peer: str
    listener: str
    size: int
    send_as: str = ""  # for messages the gateway makes itself (bounces): the mailbox to use
    user: str = ""  # the SMTP AUTH user who sent it ("" = identified by network only)


class CorruptRecord(ValueError):
    """A queue file that is not a complete record."""


def new_queue_id() -> str:
    """A unique, time-ordered, file-name-safe ID: 13 hex digits of microseconds + 6 random."""
    return f"{time.time_ns() // 1000:013X}{secrets.token_hex(3).upper()}"


def queued_at(queue_id: str) -> float | None:
    """When a queue ID was made (seconds since the epoch), read from the ID itself."""
    try:
        return int(queue_id[:13], 16) / 1_000_000
    except ValueError:
        return None


def encode_head(envelope: Envelope) -> bytes:
    """The bytes of a queue file before the message."""
    header = json.dumps(asdict(envelope), separators=(",", ":")).encode("utf-8")
    return b"".join((MAGIC, b" ", str(len(header)).encode("ascii"), b"\n", header))


def encode(envelope: Envelope, message: bytes) -> bytes:
    """The bytes of a queue file."""
    return encode_head(envelope) + message


def split_head(first: bytes) -> int:
    magic, _, length_text = first.partition(b" ")
    if magic != MAGIC or not length_text.isdigit():
        raise CorruptRecord("not a queue file")
    return int(length_text)


def parse_envelope(header: bytes) -> Envelope:
    try:
        fields = json.loads(header)
        fields["rcpt_tos"] = tuple(fields["rcpt_tos"])
        return Envelope(**fields)
    except (ValueError, TypeError, KeyError) as error:
        raise CorruptRecord(f"unreadable envelope: {error}") from None


def decode(data: bytes) -> tuple[Envelope, bytes]:
    """Envelope and message from queue-file bytes; `CorruptRecord` if it is not complete."""
    first, newline, rest = data.partition(b"\n")
    if not newline:
        raise CorruptRecord("not a queue file")
    length = split_head(first)
    envelope = parse_envelope(rest[:length])
    message = rest[length:]
    if len(message) != envelope.size:
        raise CorruptRecord(f"message is {len(message)} bytes, envelope says {envelope.size}")
    return envelope, message
