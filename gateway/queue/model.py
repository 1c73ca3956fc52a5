"""What the queue keeps about a message, in every backend: its envelope, and what a reader of
the queue gets back. Pure data, with the envelope's JSON form (validated field by field, since
it comes back from disk or a database and may not be what was written).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from gateway.errors import CorruptRecord
from gateway.mime.buffer import Buffer

QUEUE_STATES = ("queue", "active", "hold", "corrupt")
# The states as people read them (the commands, the console).
STATE_WORDS = {"queue": "queued", "active": "sending", "hold": "held", "corrupt": "corrupt"}
# Every name a state may be asked for by: its stored name or its word.
STATE_NAMES = {**{state: state for state in STATE_WORDS}, **{w: s for s, w in STATE_WORDS.items()}}
QUEUE_ID_PATTERN = r"[0-9A-F]{19}"  # what `new_queue_id` makes
_QUEUE_ID = re.compile(QUEUE_ID_PATTERN)


@dataclass(frozen=True, slots=True)
class Trace:
    """What the SMTP session showed of the client, for the Received header (RFC 5321 4.4)."""

    helo: str  # the name given with EHLO or HELO, as the client sent it
    esmtp: bool  # EHLO (True) or HELO
    tls: bool  # STARTTLS or implicit TLS

    def protocol(self, authenticated: bool) -> str:
        """The `with` keyword (RFC 3848): SMTP, ESMTP, ESMTPS, ESMTPA or ESMTPSA."""
        if not self.esmtp:
            return "SMTP"
        return "ESMTP" + ("S" if self.tls else "") + ("A" if authenticated else "")


@dataclass(frozen=True, slots=True)
class Envelope:
    """What the SMTP session (or the gateway itself) told us about a message, kept with it.

    The sending identity that policy resolved at acceptance is kept too (`send_as`,
    `reply_to_sender`), so delivery routes the message as it was accepted, whatever the
    configuration says by then about that client or user.
    """

    queue_id: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    received_at: float
    client: str
    peer: str
    listener: str
    size: int
    user: str = ""  # the SMTP AUTH user who sent it ("" = identified by network only)
    send_as: str = ""  # the client's or user's send_as mailbox ("" = send as the sender)
    reply_to_sender: bool = True  # with send_as: the device's own From goes to Reply-To
    notice_from: str = ""  # a notice the gateway made (a bounce): the mailbox it is sent as
    # False for records written before the identity was kept: delivery then looks the client
    # or user up by name in the current configuration, as those versions did.
    identity_known: bool = True
    trace: Trace | None = None  # None: a notice, or a record from before it was kept

    @property
    def is_notice(self) -> bool:
        """A delivery status notification the gateway made itself (never bounced in turn)."""
        return bool(self.notice_from)


@dataclass(frozen=True, slots=True)
class Arrival:
    """What the session (or the gateway itself, for a notice) knows of a message it accepts:
    the envelope but for the queue ID, size and time, which the queue sets when it commits."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    client: str
    peer: str
    listener: str
    user: str = ""
    send_as: str = ""
    reply_to_sender: bool = True
    notice_from: str = ""
    mailbox: str = ""  # the mailbox it will be sent as (a cluster holds its limits by it)
    trace: Trace | None = None

    def envelope(self, queue_id: str, size: int) -> Envelope:
        """The envelope it is kept with, received now."""
        return Envelope(
            queue_id=queue_id,
            mail_from=self.mail_from,
            rcpt_tos=self.rcpt_tos,
            received_at=time.time(),
            client=self.client,
            peer=self.peer,
            listener=self.listener,
            size=size,
            user=self.user,
            send_as=self.send_as,
            reply_to_sender=self.reply_to_sender,
            notice_from=self.notice_from,
            trace=self.trace,
        )


def _nothing() -> None:
    """What closing a message held in memory does."""


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """A leased message: its envelope, its bytes (in memory, or read from the queue's storage
    as they are needed: close it when done), and how often delivery was tried already."""

    envelope: Envelope
    message: Buffer
    attempts: int = 0
    close: Callable[[], None] = field(default=_nothing, repr=False, compare=False)

    @property
    def queue_id(self) -> str:
        """The queue ID the client was given with 250."""
        return self.envelope.queue_id


class Due(NamedTuple):
    """A queued message and when it may be tried (wall-clock time), as found at start-up."""

    queue_id: str
    next_attempt: float
    size: int  # bytes it takes in the queue (envelope and message)
    requeued: bool = False  # it was being delivered when the process stopped (back from active)
    outage: str = ""  # the tenant whose outage deferred it last ("" = none, or due now)


@dataclass(frozen=True, slots=True)
class Entry:
    """One message as `queue list` shows it."""

    queue_id: str
    state: str
    next_attempt: float
    size: int


@dataclass(frozen=True, slots=True)
class Listed:
    """One message as `queue list` shows it, like `mailq`: who sent it to whom, how big, and
    what it waits for (the last attempt's reason, or why it is held)."""

    queue_id: str
    state: str
    size: int  # the message's bytes (as the client sent them)
    received_at: float
    mail_from: str
    rcpt_tos: tuple[str, ...]
    next_attempt: float | None  # when queued
    attempts: int
    reason: str  # why it waits: the last attempt's reason, or the hold reason ("" if none)
    peer: str = ""  # the client's address (the device that sent it)
    user: str = ""  # its SMTP AUTH user ("" when identified by network only)


@dataclass(frozen=True, slots=True)
class Exported:
    """A whole message as one queue hands it to another (`spool migrate`): the envelope, the
    bytes, and where it stood (queued with its next attempt, or held with the reason), with
    its attempt history. Close it when done (the bytes may be read from a file)."""

    envelope: Envelope
    message: Buffer
    state: str  # "queue" or "hold"
    next_attempt: float
    attempts: tuple[dict[str, Any], ...]
    hold_reason: dict[str, Any] | None
    mailbox: str = ""  # the mailbox it will be sent as, when known (a cluster limits by it)
    close: Callable[[], None] = field(default=_nothing, repr=False, compare=False)

    @property
    def queue_id(self) -> str:
        return self.envelope.queue_id


def new_queue_id() -> str:
    """A unique, time-ordered, file-name-safe ID: 13 hex digits of microseconds + 6 random."""
    return f"{time.time_ns() // 1000:013X}{secrets.token_hex(3).upper()}"


def is_queue_id(text: str) -> bool:
    """Whether `text` has the form of a queue ID (and so is safe as a file name)."""
    return _QUEUE_ID.fullmatch(text) is not None


def queued_at(queue_id: str) -> float | None:
    """When a queue ID was made (seconds since the epoch), read from the ID itself."""
    try:
        return int(queue_id[:13], 16) / 1_000_000
    except ValueError:
        return None


# -- the JSON form -----------------------------------------------------------------------------

_TEXT_FIELDS = (
    "queue_id",
    "mail_from",
    "client",
    "peer",
    "listener",
    "user",
    "send_as",
    "notice_from",
)
_REQUIRED = (
    "queue_id",
    "mail_from",
    "rcpt_tos",
    "received_at",
    "client",
    "peer",
    "listener",
    "size",
)


def envelope_json(envelope: Envelope) -> bytes:
    """The envelope as compact JSON (`origin` marks the records that keep the identity)."""
    fields: dict[str, Any] = {
        "queue_id": envelope.queue_id,
        "mail_from": envelope.mail_from,
        "rcpt_tos": list(envelope.rcpt_tos),
        "received_at": envelope.received_at,
        "client": envelope.client,
        "peer": envelope.peer,
        "listener": envelope.listener,
        "size": envelope.size,
        "user": envelope.user,
        "origin": "notice" if envelope.is_notice else "smtp",
        "send_as": envelope.send_as,
        "reply_to_sender": envelope.reply_to_sender,
        "notice_from": envelope.notice_from,
    }
    if envelope.trace is not None:
        trace = envelope.trace
        fields["trace"] = {"helo": trace.helo, "esmtp": trace.esmtp, "tls": trace.tls}
    return json.dumps(fields, separators=(",", ":")).encode("utf-8")


def parse_envelope(data: bytes) -> Envelope:
    """The envelope in a record's JSON; `CorruptRecord` unless every field has its type.
    Fields a newer version may add are ignored. Records without `origin` are from before the
    identity was kept: their `send_as` named the mailbox of a notice."""
    try:
        fields = json.loads(data)
    except (ValueError, RecursionError) as error:
        raise CorruptRecord(f"unreadable envelope: {type(error).__name__}") from None
    if not isinstance(fields, dict):
        raise CorruptRecord("the envelope is not a JSON object")
    missing = [name for name in _REQUIRED if name not in fields]
    if missing:
        raise CorruptRecord(f"the envelope lacks {', '.join(missing)}")
    for name in _TEXT_FIELDS:
        if not isinstance(fields.get(name, ""), str):
            raise CorruptRecord(f"the envelope's {name} is not text")
    recipients = fields["rcpt_tos"]
    if not isinstance(recipients, list) or not all(isinstance(r, str) for r in recipients):
        raise CorruptRecord("the envelope's rcpt_tos is not a list of addresses")
    size, received = fields["size"], fields["received_at"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise CorruptRecord("the envelope's size is not a byte count")
    if isinstance(received, bool) or not isinstance(received, int | float):
        raise CorruptRecord("the envelope's received_at is not a time")
    reply_to_sender = fields.get("reply_to_sender", True)
    if not isinstance(reply_to_sender, bool):
        raise CorruptRecord("the envelope's reply_to_sender is not true or false")
    legacy = "origin" not in fields
    trace = _trace(fields.get("trace"))
    return Envelope(
        queue_id=fields["queue_id"],
        mail_from=fields["mail_from"],
        rcpt_tos=tuple(recipients),
        received_at=float(received),
        client=fields["client"],
        peer=fields["peer"],
        listener=fields["listener"],
        size=size,
        user=fields.get("user", ""),
        send_as="" if legacy else fields.get("send_as", ""),
        reply_to_sender=reply_to_sender,
        notice_from=fields.get("send_as", "") if legacy else fields.get("notice_from", ""),
        identity_known=not legacy,
        trace=trace,
    )


def _trace(value: object) -> Trace | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise CorruptRecord("the envelope's trace is not an object")
    helo, esmtp, tls = value.get("helo"), value.get("esmtp"), value.get("tls")
    if not isinstance(helo, str) or not isinstance(esmtp, bool) or not isinstance(tls, bool):
        raise CorruptRecord("the envelope's trace lacks helo, esmtp or tls")
    return Trace(helo, esmtp, tls)
