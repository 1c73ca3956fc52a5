"""Reading the PostgreSQL queue for people: the listing `queue list` prints, one message's
details for `queue show`, and the envelope of a row checked as the file spool checks its
records."""

from __future__ import annotations

import json
from typing import Any

from gateway.errors import CorruptRecord
from gateway.pgqueue.connection import Connection, Database
from gateway.queue.model import Entry, Envelope, Listed, is_queue_id, parse_envelope


async def entries(db: Database, state: str | None = None) -> list[Entry]:
    async with db.connection() as connection:
        cursor = await connection.execute(
            "SELECT queue_id, state, extract(epoch FROM next_attempt)::float8 AS due, size"
            " FROM sgg_messages WHERE state <> 'receiving' AND (%s::text IS NULL OR state = %s)"
            " ORDER BY queue_id",
            (state, state),
        )
        rows = await cursor.fetchall()
    return [Entry(r["queue_id"], r["state"], r["due"], r["size"]) for r in rows]


async def ids(db: Database, state: str | None = None) -> list[tuple[str, str]]:
    async with db.connection() as connection:
        cursor = await connection.execute(
            "SELECT queue_id, state FROM sgg_messages"
            " WHERE state <> 'receiving' AND (%s::text IS NULL OR state = %s)"
            " ORDER BY queue_id",
            (state, state),
        )
        rows = await cursor.fetchall()
    return [(row["queue_id"], row["state"]) for row in rows]


async def listing(db: Database, state: str | None = None) -> list[Listed]:
    async with db.connection() as connection:
        cursor = await connection.execute(
            "SELECT queue_id, state, envelope, size,"
            " extract(epoch FROM next_attempt)::float8 AS due,"
            " jsonb_array_length(attempts) AS tries, attempts -> -1 ->> 'reason' AS last,"
            " hold_reason ->> 'reason' AS held FROM sgg_messages"
            " WHERE state <> 'receiving' AND (%s::text IS NULL OR state = %s)"
            " ORDER BY queue_id",
            (state, state),
        )
        rows = await cursor.fetchall()
    found = []
    for row in rows:
        reason = row["held"] or row["last"] or ""
        try:
            envelope = envelope_of(row["envelope"], row["queue_id"])
        except CorruptRecord as error:
            reason = reason or str(error)
            found.append(
                Listed(row["queue_id"], row["state"], row["size"], 0.0, "", (), None, 0, reason)
            )
            continue
        found.append(
            Listed(
                row["queue_id"],
                row["state"],
                row["size"],
                envelope.received_at,
                envelope.mail_from,
                envelope.rcpt_tos,
                row["due"] if row["state"] == "queue" else None,
                row["tries"],
                reason,
                envelope.peer,
                envelope.user,
            )
        )
    return found


async def show(db: Database, queue_id: str) -> dict[str, Any] | None:
    if not is_queue_id(queue_id):
        return None
    async with db.connection() as connection:
        row = await one(
            connection,
            "SELECT state, envelope, attempts, hold_reason,"
            " extract(epoch FROM next_attempt)::float8 AS due, leased_by"
            " FROM sgg_messages WHERE queue_id = %s AND state <> 'receiving'",
            queue_id,
        )
    if row is None:
        return None
    info: dict[str, Any] = {"queue_id": queue_id, "state": row["state"]}
    try:
        info["envelope"] = envelope_of(row["envelope"], queue_id)
    except CorruptRecord as error:
        info["error"] = str(error)
    if row["state"] == "queue":
        info["next_attempt"] = row["due"]
    if row["state"] == "active":
        info["leased_by"] = row["leased_by"]
    info["attempts"] = [a for a in row["attempts"] or [] if isinstance(a, dict)]
    if row["state"] in ("hold", "corrupt") and isinstance(row["hold_reason"], dict):
        info["hold"] = row["hold_reason"]
    return info


async def one(connection: Connection, sql: str, *parameters: object) -> dict[str, Any] | None:
    cursor = await connection.execute(sql, parameters)
    return await cursor.fetchone()


def envelope_of(document: object, queue_id: str, size: int | None = None) -> Envelope:
    """The envelope in a row, checked as the file spool checks its records."""
    envelope = parse_envelope(json.dumps(document).encode("utf-8"))
    if envelope.queue_id != queue_id:
        raise CorruptRecord(f"its envelope names {envelope.queue_id!r}, not its row")
    if size is not None and envelope.size != size:
        raise CorruptRecord(f"message is {size} bytes, envelope says {envelope.size}")
    return envelope
