"""Moving a queue (`spool migrate`): a message of the PostgreSQL queue exported with its
history, and one from another queue adopted with its ID, attempts, next attempt and hold."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import TYPE_CHECKING

from gateway.errors import CorruptRecord, SpoolError
from gateway.pgqueue.reading import envelope_of, one
from gateway.pgqueue.writer import CHUNK, PgWriter
from gateway.queue.model import Exported, is_queue_id
from gateway.spool.body import FileBody

if TYPE_CHECKING:
    from gateway.pgqueue.queue import PgQueue


async def export(queue: PgQueue, queue_id: str) -> Exported | None:
    """A queued or held message with everything another queue needs to take it over."""
    if not is_queue_id(queue_id):
        return None
    async with queue.db.connection() as connection:
        row = await one(
            connection,
            "SELECT state, envelope, size, mailbox, attempts, hold_reason,"
            " extract(epoch FROM next_attempt)::float8 AS due FROM sgg_messages"
            " WHERE queue_id = %s AND state IN ('queue', 'hold')",
            queue_id,
        )
    if row is None:
        return None
    envelope = envelope_of(row["envelope"], queue_id, row["size"])
    body = await queue.read_body(queue_id, envelope.size)
    exported = Exported(
        envelope,
        body,
        row["state"],
        row["due"],
        tuple(a for a in row["attempts"] or [] if isinstance(a, dict)),
        row["hold_reason"] if isinstance(row["hold_reason"], dict) else None,
        mailbox=row["mailbox"],
    )
    return replace(exported, close=body.close) if isinstance(body, FileBody) else exported


async def adopt(queue: PgQueue, message: Exported) -> bool:
    """Take over a message exported from another queue (False: it is here already)."""
    queue_id = message.queue_id
    if not is_queue_id(queue_id):
        raise CorruptRecord(f"{queue_id!r} is not a queue ID")
    async with queue.db.connection() as connection:
        # What an interrupted run left half-written (its rows are "receiving", which no node
        # delivers and no heartbeat of the migrator sweeps): written again from the start.
        await connection.execute(
            "DELETE FROM sgg_messages WHERE queue_id = %s AND state = 'receiving'", (queue_id,)
        )
        if await one(connection, "SELECT 1 FROM sgg_messages WHERE queue_id = %s", queue_id):
            return False
    writer = PgWriter(queue, queue_id)
    body = message.message
    try:
        for start in range(0, len(body), CHUNK):
            await writer.write(body[start : start + CHUNK])
        await writer.commit_envelope(
            message.envelope,
            mailbox=message.mailbox,
            next_attempt=message.next_attempt,
            attempts=list(message.attempts),
            state=message.state,
            hold_reason=(
                {"reason": "held", **(message.hold_reason or {})}
                if message.state == "hold"
                else None
            ),
        )
    except BaseException:
        with contextlib.suppress(SpoolError):
            await writer.abort()
        raise
    return True
