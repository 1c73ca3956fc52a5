"""A message arriving into the cluster's queue: a row in state `receiving` and its bytes in
rows of about 1 MiB as DATA comes (each committed, so no transaction is held open for the
whole of a slow DATA), then one commit that makes it `queue` with its envelope — only then
may the client hear `250`. A small message is all of that in one statement.

If this node dies in the middle, its `receiving` rows are removed by whichever node sees its
heartbeat stop (`Cluster.sweep`); they were never acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING

import structlog
from psycopg.types.json import Jsonb

from gateway.errors import SpoolError
from gateway.pgqueue.connection import ConnectionLost
from gateway.queue.model import Arrival, Envelope, envelope_json, new_queue_id

if TYPE_CHECKING:
    from gateway.pgqueue.queue import PgQueue

log = structlog.get_logger("gateway.queue")
CHUNK = 1024 * 1024  # bytes per sgg_chunks row
CONFIRM_TIMEOUT = 10.0  # seconds to find out whether a commit whose answer was lost happened


class PgWriter:
    """One message being received (or copied) into the database."""

    def __init__(self, queue: PgQueue, queue_id: str | None = None) -> None:
        self._queue = queue
        self.queue_id = queue_id or new_queue_id()
        self._pending = bytearray()
        self._rows = 0  # chunk rows written so far
        self._started = False  # the `receiving` row exists
        self.size = 0

    async def write(self, data: bytes) -> None:
        """Append message bytes; a full chunk goes to the database at once."""
        self._pending += data
        self.size += len(data)
        while len(self._pending) >= CHUNK:
            piece = bytes(self._pending[:CHUNK])
            del self._pending[:CHUNK]
            await self._put(piece)

    async def _put(self, piece: bytes) -> None:
        async with self._queue.db.connection() as connection:
            if not self._started:
                await connection.execute(
                    "INSERT INTO sgg_messages (queue_id, state, leased_by) "
                    "VALUES (%s, 'receiving', %s)",
                    (self.queue_id, self._queue.node),
                )
                self._started = True
            await connection.execute(
                "INSERT INTO sgg_chunks (queue_id, seq, data) VALUES (%s, %s, %s)",
                (self.queue_id, self._rows, piece),
            )
        self._rows += 1

    async def commit(self, arrival: Arrival) -> str:
        """COMMIT the message as queued (and tell the nodes); its queue ID. `SpoolError` when
        the database cannot: then nothing was acknowledged."""
        envelope = arrival.envelope(self.queue_id, self.size)
        try:
            await self.commit_envelope(envelope, mailbox=arrival.mailbox)
        except ConnectionLost as error:
            if not await self._committed_after_all():
                raise
            log.warning(
                "commit_confirmed",
                queue_id=self.queue_id,
                reason=f"the answer to the commit was lost ({error}); a new connection "
                "found the message queued",
                action="none: the message is queued and the client hears 250",
            )
        return self.queue_id

    async def _committed_after_all(self) -> bool:
        """The connection broke while the commit was under way, so it may have happened (a
        failover to a synchronous standby keeps it): look on a new connection. False when
        it did not, or when that cannot be told either: then the client hears 451 and sends
        the message again (delivered twice at worst, never lost)."""
        try:
            async with asyncio.timeout(CONFIRM_TIMEOUT):
                return await self._queue.state_of(self.queue_id) is not None
        except (SpoolError, TimeoutError):
            return False

    async def commit_envelope(
        self,
        envelope: Envelope,
        *,
        mailbox: str = "",
        next_attempt: float | None = None,
        attempts: list[dict[str, object]] | None = None,
        state: str = "queue",
        hold_reason: dict[str, object] | None = None,
    ) -> None:
        """Queue the message with `envelope` (and, for a copy or a migration, its history)."""
        document = Jsonb(_envelope_document(envelope))
        when = time.time() if next_attempt is None else next_attempt
        history = Jsonb(attempts or [])
        reason = Jsonb(hold_reason) if hold_reason is not None else None
        piece = bytes(self._pending)
        self._pending.clear()
        async with self._queue.db.connection() as connection:
            if not self._started:  # all of it in one statement (one commit)
                await connection.execute(
                    "WITH m AS (INSERT INTO sgg_messages (queue_id, state, envelope, size, mailbox,"
                    " next_attempt, attempts, hold_reason, received_at)"
                    " VALUES (%(id)s, %(state)s, %(envelope)s, %(size)s, %(mailbox)s,"
                    " to_timestamp(%(when)s), %(attempts)s, %(reason)s, to_timestamp(%(at)s))),"
                    " c AS (INSERT INTO sgg_chunks (queue_id, seq, data)"
                    " SELECT %(id)s, 0, %(data)s WHERE length(%(data)s) > 0)"
                    " SELECT pg_notify('sgg_queue', %(id)s)",
                    {
                        "id": self.queue_id,
                        "state": state,
                        "envelope": document,
                        "size": envelope.size,
                        "mailbox": mailbox.lower(),
                        "when": when,
                        "attempts": history,
                        "reason": reason,
                        "at": envelope.received_at,
                        "data": piece,
                    },
                )
                return
            async with connection.transaction():
                if piece:
                    await connection.execute(
                        "INSERT INTO sgg_chunks (queue_id, seq, data) VALUES (%s, %s, %s)",
                        (self.queue_id, self._rows, piece),
                    )
                cursor = await connection.execute(
                    "UPDATE sgg_messages SET state = %s, envelope = %s, size = %s, mailbox = %s,"
                    " next_attempt = to_timestamp(%s), attempts = %s, hold_reason = %s,"
                    " leased_by = NULL, received_at = to_timestamp(%s), changed_at = now()"
                    " WHERE queue_id = %s AND state = 'receiving'",
                    (
                        state,
                        document,
                        envelope.size,
                        mailbox.lower(),
                        when,
                        history,
                        reason,
                        envelope.received_at,
                        self.queue_id,
                    ),
                )
                if cursor.rowcount != 1:  # swept as a dead node's leftover: the bytes are gone
                    raise SpoolError(
                        "cannot store message: its partial rows were removed meanwhile (this "
                        "node's heartbeat had stopped)"
                    )
                await connection.execute("SELECT pg_notify('sgg_queue', %s)", (self.queue_id,))

    async def abort(self) -> None:
        """Drop what was written."""
        self._pending.clear()
        if self._started:
            async with self._queue.db.connection() as connection:
                await connection.execute(
                    "DELETE FROM sgg_messages WHERE queue_id = %s AND state = 'receiving'",
                    (self.queue_id,),
                )
            self._started = False


def _envelope_document(envelope: Envelope) -> object:
    """The envelope in its JSON form (`queue.model`), as a JSON value for the column."""
    return json.loads(envelope_json(envelope))
