"""What the queue page filters on, kept between requests: each message's sender, recipients,
device (client address, AUTH user) and arrival, by queue ID.

An envelope never changes once a message is queued, so it is read once: the first filter by
sender, recipient or tenant reads them all (`Queue.listing`, one pass), later ones only the
messages that arrived since (`Queue.show`, one each), and IDs that left the queue are
forgotten. Filtering by state and age needs none of it: the queue's IDs (`Queue.ids`) are
time-ordered.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.queue.base import Queue

_ONE_PASS = 200  # more new messages than this: read them all in one listing instead


@dataclass(frozen=True, slots=True)
class Known:
    """The parts of an envelope the filters use."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    received_at: float
    peer: str
    user: str


class EnvelopeIndex:
    """Envelopes by queue ID, for one queue."""

    def __init__(self, queue: Queue) -> None:
        self._queue = queue
        self._known: dict[str, Known] = {}

    async def envelopes(self, ids: list[tuple[str, str]]) -> dict[str, Known]:
        """The envelope of each listed message that could be read (others are left out)."""
        wanted = {queue_id for queue_id, _state in ids}
        for gone in self._known.keys() - wanted:
            del self._known[gone]
        missing = wanted - self._known.keys()
        if len(missing) > _ONE_PASS:
            for item in await self._queue.listing():
                if item.received_at:  # an unreadable record is listed without one
                    self._known[item.queue_id] = Known(
                        item.mail_from, item.rcpt_tos, item.received_at, item.peer, item.user
                    )
        else:
            for queue_id in missing:
                info = await self._queue.show(queue_id)
                envelope = info.get("envelope") if info else None
                if envelope is not None:
                    self._known[queue_id] = Known(
                        envelope.mail_from,
                        envelope.rcpt_tos,
                        envelope.received_at,
                        envelope.peer,
                        envelope.user,
                    )
        return {queue_id: self._known[queue_id] for queue_id in wanted if queue_id in self._known}
