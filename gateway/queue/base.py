"""The one interface to the queue: what the SMTP side, the delivery engine, the control socket,
the queue commands and metrics may ask of it, whatever keeps the mail.

The promises every backend keeps:
- `store` returns only once the message is durable (fsynced, or committed); the ID it returns
  is what the client is told with `250`.
- A message is in exactly one state at any moment: queued (with its next attempt), leased
  (being delivered), held (with a reason), or corrupt.
- A lease ends with `complete`, `defer`, `hold` or `abandon`; a lease whose holder died ends
  by itself (`reclaim`, or the next start), so the message is delivered at least once and
  never lost.
- Deferring and holding need no new space (a full disk cannot strand a message); the attempt
  history is written when there is room.
"""

from __future__ import annotations

from typing import Any, Protocol

from gateway.queue.model import Arrival, Due, Entry, Envelope, Exported, Listed, QueuedMessage

# A JSON-able record: one attempt in a message's history, or why it is held.
Record = dict[str, Any]


class MessageWriter(Protocol):
    """One message arriving: written as it comes, queued by `commit`."""

    queue_id: str  # the ID it will have (known from the start: a Received header names it)

    async def write(self, data: bytes) -> None:
        """Append message bytes. `SpoolError` when the queue cannot take them."""
        ...

    async def commit(self, arrival: Arrival) -> str:
        """Make the message durable and queued (fsynced, or committed) with its envelope; its
        queue ID. `SpoolError` when it cannot be: nothing is queued then."""
        ...

    async def abort(self) -> None:
        """Drop what was written."""
        ...


class Queue(Protocol):
    """A durable queue of messages."""

    @property
    def name(self) -> str:
        """What kind of store it is, for logs and readiness ("files", "postgresql")."""
        ...

    async def open(self, *, exclusive: bool = True) -> None:
        """Take the queue for this process (`SpoolError` if another has it); `exclusive=False`
        to read it beside a running daemon (`list`, `show`)."""
        ...

    async def close(self) -> None:
        """Finish what is under way (removals of delivered messages) and let go."""
        ...

    async def recover(self) -> list[Due]:
        """At start: drop partial writes, queue again what this node had leased, and return
        every queued message, oldest first."""
        ...

    # -- acceptance ----------------------------------------------------------------------------

    def receive(self) -> MessageWriter:
        """A message to be written as it arrives (DATA is streamed into it)."""
        ...

    async def store(self, arrival: Arrival, message: bytes) -> str:
        """Keep a whole message durably; its queue ID. `SpoolError` when it cannot."""
        ...

    # -- delivery ------------------------------------------------------------------------------

    async def peek(self, queue_id: str) -> Envelope | None:
        """The envelope of a queued message (None if it is not queued); `CorruptRecord`."""
        ...

    async def lease(self, queue_id: str) -> QueuedMessage | None:
        """Take a queued message for delivery (None if it is not queued any more); a record
        that is not whole is set aside as corrupt and `CorruptRecord` raised."""
        ...

    async def complete(self, queue_id: str) -> None:
        """A leased message was delivered: forget it."""
        ...

    async def defer(self, queue_id: str, next_attempt: float, attempt: Record) -> str | None:
        """Queue a leased message again, due at `next_attempt`, with `attempt` added to its
        history (best effort: why the history could not be written, else None)."""
        ...

    async def hold(
        self,
        queue_id: str,
        reason: Record,
        *,
        state: str = "active",
        attempt: Record | None = None,
    ) -> bool:
        """Park a message (leased, or queued when an administrator asks) with its reason, and
        the attempt that decided it in its history; False if it was no longer in `state`."""
        ...

    async def split(
        self,
        queued: QueuedMessage,
        rcpt_tos: tuple[str, ...],
        next_attempt: float,
        attempt: Record,
    ) -> str:
        """Queue a copy of a leased message for some of its recipients, due at `next_attempt`,
        keeping its arrival time and history; the copy's ID. `SpoolError` when it cannot."""
        ...

    async def abandon(self, queue_id: str) -> None:
        """Give up a lease that could not be ended: `reclaim` queues the message again."""
        ...

    async def reclaim(self) -> list[str]:
        """Messages whose lease nobody holds any more, queued again and due now: their IDs."""
        ...

    # -- reading and administration ------------------------------------------------------------

    async def state_of(self, queue_id: str) -> str | None:
        """ "queue", "active", "hold" or "corrupt"; None if the queue has no such message."""
        ...

    async def entries(self, state: str | None = None) -> list[Entry]:
        """Every message (of one state), without reading message bodies."""
        ...

    async def ids(self, state: str | None = None) -> list[tuple[str, str]]:
        """(queue ID, state) of every message (of one state), oldest first: the cheapest
        listing (no envelope, no file metadata), for paging through a deep queue. Queue IDs
        are time-ordered, so they also tell each message's age."""
        ...

    async def listing(self, state: str | None = None) -> list[Listed]:
        """Every message (of one state) with its envelope, as `queue list` shows it."""
        ...

    async def show(self, queue_id: str) -> dict[str, Any] | None:
        """Everything known about one message: envelope, state, attempts, hold reason."""
        ...

    async def attempts(self, queue_id: str) -> list[Record]:
        """The attempt history of a message."""
        ...

    async def requeue(self, queue_id: str) -> bool:
        """Make a queued or held message due now (retry, release)."""
        ...

    async def delete(self, queue_id: str) -> bool:
        """Remove a queued, held or corrupt message for good (never one being delivered)."""
        ...

    # -- moving a queue (`spool migrate`) ------------------------------------------------------

    async def export(self, queue_id: str) -> Exported | None:
        """A queued or held message whole, to be adopted by another queue (None when it is not
        queued or held); `CorruptRecord` when it cannot be read."""
        ...

    async def adopt(self, message: Exported) -> bool:
        """Keep a message another queue exported, under its own queue ID, in its state, with
        its history, durably; False (and nothing changed) when this queue has it already."""
        ...

    # -- health --------------------------------------------------------------------------------

    async def census(self) -> dict[str, object]:
        """Messages per state and the age of the oldest one waiting."""
        ...

    def available(self) -> bool:
        """Whether the store can be reached at all right now (a database that is down is not;
        a full disk is, and is a `problem`)."""
        ...

    def problem(self) -> str | None:
        """Why new mail cannot be taken right now (no free space, store unreachable); cheap."""
        ...

    def readiness(self) -> dict[str, bool]:
        """The store's readiness checks by name (for /readyz)."""
        ...
