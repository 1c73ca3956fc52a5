"""Queue a delivery status notification for a held message — when that is right.

Never for a null sender, never for the gateway's own notifications or other automatic mail (no
loops), and only when a postmaster mailbox is configured to send them. The notification is an
ordinary queued message sent as the postmaster mailbox, so it is as durable as any other.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from gateway.errors import SpoolError
from gateway.mime.dsn import Failure, build_dsn, is_notification
from gateway.queue.base import Queue
from gateway.queue.model import Arrival, QueuedMessage


@dataclass(frozen=True, slots=True)
class Notice:
    """What happened to the notification: its queue ID, or why none was sent."""

    queue_id: str = ""
    reason: str = ""


class Bouncer:
    """Builds and queues notifications for one spool."""

    def __init__(self, queue: Queue, postmaster: str, hostname: str) -> None:
        self._queue = queue
        self._postmaster = postmaster
        self._hostname = hostname or "smtp-graph-gateway"

    async def bounce(self, queued: QueuedMessage, failure: Failure) -> Notice:
        """Queue a notification for `queued`, or say why not."""
        envelope = queued.envelope
        if not self._postmaster:
            return Notice(reason="no delivery.postmaster configured")
        if not envelope.mail_from:
            return Notice(reason="null sender")
        if envelope.is_notice or is_notification(queued.message):
            return Notice(reason="the message is itself a notification")
        dsn = build_dsn(
            original=queued.message,
            original_sender=envelope.mail_from,
            queue_id=envelope.queue_id,
            failure=failure,
            postmaster=self._postmaster,
            reporting_host=self._hostname,
            arrival=envelope.received_at,
            now=time.time(),
        )
        try:
            queue_id = await self._queue.store(
                Arrival(
                    mail_from="",
                    rcpt_tos=(envelope.mail_from,),
                    client="gateway",
                    peer="",
                    listener="bounce",
                    notice_from=self._postmaster,
                    mailbox=self._postmaster,
                ),
                dsn,
            )
        except SpoolError as error:
            return Notice(reason=f"cannot queue the notification: {error}")
        return Notice(queue_id=queue_id)
