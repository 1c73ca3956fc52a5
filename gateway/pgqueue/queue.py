"""The cluster's queue in PostgreSQL: the gateway's `Queue` for `spool.backend: postgresql`.

Every node of a cluster uses the same tables (schema.py). A message is committed with its
envelope and all its bytes before `250`; a node delivers it under a lease it renews while the
delivery runs (cluster.py), and every change of state is guarded by that lease, so a node cut
off from the database cannot undo what another node did after its lease ran out. A message is
read back whole when small and into a temporary file beside `spool.directory` when large
(`FileBody`), never whole in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, LiteralString

import structlog
from psycopg import sql
from psycopg.types.json import Jsonb

from gateway.config import PostgresSettings
from gateway.errors import CorruptRecord, QueueUnavailable, SpoolError
from gateway.pgqueue import moving, reading
from gateway.pgqueue.cluster import Claimed, Cluster
from gateway.pgqueue.connection import Database, retry_delay
from gateway.pgqueue.reading import envelope_of, one
from gateway.pgqueue.schema import open_schema
from gateway.pgqueue.writer import PgWriter
from gateway.queue.base import Record
from gateway.queue.model import (
    Arrival,
    Due,
    Entry,
    Envelope,
    Exported,
    Listed,
    QueuedMessage,
    envelope_json,
    is_queue_id,
)
from gateway.spool.body import FileBody

log = structlog.get_logger("gateway.queue")
INLINE_BODY = 4 * 1024 * 1024  # larger messages are read back into a temporary file


class PgQueue:
    """One node's view of the cluster's queue."""

    name = "postgresql"

    def __init__(
        self,
        settings: PostgresSettings,
        *,
        directory: Path | None = None,
        max_messages: int = 100_000,
    ) -> None:
        self.settings = settings
        self.db = Database(settings)
        self.node_name = settings.node or socket.gethostname()
        self.node = f"{self.node_name}/{uuid.uuid4().hex[:8]}"  # a new identity per start
        self.directory = directory or Path(tempfile.gettempdir())
        self._max_messages = max_messages
        self.cluster = Cluster(self)
        self._claims: dict[str, Claimed] = {}  # claimed by this node, not leased yet

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self, *, exclusive: bool = True) -> None:
        """Connect (waiting and retrying while the database is away), check the schema,
        register this node and start its heartbeat and listener. `exclusive=False`: one
        attempt, for a command that reads the queue."""
        if exclusive:
            await asyncio.to_thread(_work_directory, self.directory)
        await self.db.open()
        await open_schema(self.db, upgrade_schema=self.settings.upgrade_schema, wait=exclusive)
        if exclusive:
            await self.cluster.start()

    async def close(self) -> None:
        """Give back the leases this node still holds (their deliveries were stopped), leave
        the cluster and close the connections."""
        with contextlib.suppress(SpoolError):
            await self.cluster.stop()
        await self.db.close()

    async def recover(self) -> list[Due]:
        """Nothing to schedule locally: every node claims from the database (and a lease an
        earlier run of this node left is taken over when it lapses)."""
        return []

    # -- acceptance ----------------------------------------------------------------------------

    def receive(self) -> PgWriter:
        return PgWriter(self)

    async def store(self, arrival: Arrival, message: bytes) -> str:
        writer = self.receive()
        try:
            await writer.write(message)
            return await writer.commit(arrival)
        except BaseException:  # its rows written so far go (not left for the node's end)
            with contextlib.suppress(SpoolError):
                await asyncio.shield(writer.abort())
            raise

    # -- delivery ------------------------------------------------------------------------------

    async def peek(self, queue_id: str) -> Envelope | None:
        async with self.db.connection() as connection:
            row = await one(
                connection,
                "SELECT envelope FROM sgg_messages WHERE queue_id = %s AND state = 'queue'",
                queue_id,
            )
        return None if row is None else envelope_of(row["envelope"], queue_id)

    def claimed(self, claim: Claimed) -> None:
        """The dispatcher claimed a message for this node: `lease` takes it from here."""
        self._claims[claim.queue_id] = claim

    async def lease(self, queue_id: str) -> QueuedMessage | None:
        claim = self._claims.pop(queue_id, None)
        if claim is None:
            async with self.db.connection() as connection:
                row = await one(
                    connection,
                    "UPDATE sgg_messages SET state = 'active', leased_by = %s,"
                    " lease_until = now() + %s * interval '1 second', changed_at = now()"
                    " WHERE queue_id = %s AND state = 'queue' AND next_attempt <= now()"
                    " RETURNING envelope, size, jsonb_array_length(attempts) AS attempts",
                    self.node,
                    self.settings.lease,
                    queue_id,
                )
            if row is None:
                return None
            claim = Claimed(queue_id, row["envelope"], row["size"], "", row["attempts"])
        self.cluster.held.add(queue_id)
        try:
            envelope = envelope_of(claim.envelope, queue_id, claim.size)
            return await self._with_body(envelope, claim.attempts)
        except CorruptRecord as error:
            await self._set_aside(queue_id, str(error))
            raise
        except BaseException:
            # Not read (the database went away meanwhile): the lease is no longer renewed,
            # so it lapses and the message is queued again for any node.
            self.cluster.held.discard(queue_id)
            raise

    async def _with_body(self, envelope: Envelope, attempts: int) -> QueuedMessage:
        """The leased message with its bytes."""
        body = await self.read_body(envelope.queue_id, envelope.size)
        if isinstance(body, bytes):
            return QueuedMessage(envelope, body, attempts)
        return QueuedMessage(envelope, body, attempts, close=body.close)

    async def read_body(self, queue_id: str, size: int) -> bytes | FileBody:
        """The message's bytes: in memory when small, else in a temporary file (a file that no
        name leads to: nothing is left behind when it is closed or the process dies)."""
        if size <= INLINE_BODY:
            async with self.db.connection() as connection:
                cursor = await connection.execute(
                    "SELECT data FROM sgg_chunks WHERE queue_id = %s ORDER BY seq", (queue_id,)
                )
                message = b"".join([bytes(row["data"]) for row in await cursor.fetchall()])
            if len(message) != size:
                raise CorruptRecord(f"message is {len(message)} bytes, envelope says {size}")
            return message
        fd = await asyncio.to_thread(_anonymous_file, self.directory, queue_id)
        written = 0
        try:
            seq = 0
            while written < size:
                async with self.db.connection() as connection:
                    row = await one(
                        connection,
                        "SELECT data FROM sgg_chunks WHERE queue_id = %s AND seq = %s",
                        queue_id,
                        seq,
                    )
                if row is None:
                    break
                written += await asyncio.to_thread(os.write, fd, bytes(row["data"]))
                seq += 1
        except BaseException:
            os.close(fd)
            raise
        if written != size:
            os.close(fd)
            raise CorruptRecord(f"message is {written} bytes, envelope says {size}")
        return FileBody(fd, 0, size)

    async def _set_aside(self, queue_id: str, reason: str) -> None:
        self.cluster.held.discard(queue_id)
        async with self.db.connection() as connection:
            await connection.execute(
                "UPDATE sgg_messages SET state = 'corrupt', leased_by = NULL,"
                " hold_reason = %s, changed_at = now() WHERE queue_id = %s",
                (Jsonb({"reason": reason}), queue_id),
            )
        self.cluster.log_corrupt(queue_id, reason)

    async def complete(self, queue_id: str) -> None:
        """The message was delivered: its row goes. While the database cannot be reached the
        removal is tried again and the lease stays this node's (its heartbeat renews it as
        soon as the database is back): a lease given up here would have the message
        delivered a second time by whichever node took it over."""
        attempt = 0
        self.cluster.delivered.add(queue_id)
        while True:
            try:
                await self._change(
                    "DELETE FROM sgg_messages WHERE queue_id = %s AND state = 'active'"
                    " AND leased_by = %s",
                    queue_id,
                    self.node,
                )
                break
            except QueueUnavailable as error:
                attempt += 1
                if attempt == 1:
                    log.warning(
                        "delivered_not_recorded",
                        queue_id=queue_id,
                        reason=str(error),
                        action="the message was delivered; its removal from the queue is "
                        "tried again until the database answers, and its lease is kept so "
                        "that no node sends it again",
                    )
                await retry_delay(attempt)
        self.cluster.held.discard(queue_id)
        self.cluster.delivered.discard(queue_id)

    async def defer(self, queue_id: str, next_attempt: float, attempt: Record) -> str | None:
        self.cluster.held.discard(queue_id)
        await self._change(
            "UPDATE sgg_messages SET state = 'queue', leased_by = NULL, lease_until = NULL,"
            " next_attempt = to_timestamp(%s), attempts = attempts || %s, changed_at = now()"
            " WHERE queue_id = %s AND state = 'active' AND leased_by = %s",
            next_attempt,
            Jsonb([attempt]),
            queue_id,
            self.node,
        )
        return None

    async def hold(
        self,
        queue_id: str,
        reason: Record,
        *,
        state: str = "active",
        attempt: Record | None = None,
    ) -> bool:
        self.cluster.held.discard(queue_id)
        note = Jsonb({**reason, "held_at": time.time()})
        holder = self.node if state == "active" else None
        return await self._change(
            "UPDATE sgg_messages SET state = 'hold', hold_reason = %s, leased_by = NULL,"
            " lease_until = NULL, attempts = attempts || %s, changed_at = now()"
            " WHERE queue_id = %s AND state = %s AND leased_by IS NOT DISTINCT FROM %s",
            note,
            Jsonb([attempt] if attempt is not None else []),
            queue_id,
            state,
            holder,
        )

    async def split(
        self,
        queued: QueuedMessage,
        rcpt_tos: tuple[str, ...],
        next_attempt: float,
        attempt: Record,
    ) -> str:
        copy = PgWriter(self)
        envelope = replace(queued.envelope, queue_id=copy.queue_id, rcpt_tos=rcpt_tos)
        async with self.db.connection() as connection, connection.transaction():
            await connection.execute(
                "INSERT INTO sgg_messages (queue_id, state, envelope, size, mailbox, next_attempt,"
                " attempts, received_at) SELECT %s, 'queue', %s, size, mailbox, to_timestamp(%s),"
                " attempts || %s, received_at FROM sgg_messages WHERE queue_id = %s",
                (
                    copy.queue_id,
                    Jsonb(json.loads(envelope_json(envelope))),
                    next_attempt,
                    Jsonb([attempt]),
                    queued.queue_id,
                ),
            )
            await connection.execute(
                "INSERT INTO sgg_chunks (queue_id, seq, data)"
                " SELECT %s, seq, data FROM sgg_chunks WHERE queue_id = %s",
                (copy.queue_id, queued.queue_id),
            )
            await connection.execute("SELECT pg_notify('sgg_queue', %s)", (copy.queue_id,))
        return copy.queue_id

    async def abandon(self, queue_id: str) -> None:
        self.cluster.held.discard(queue_id)
        await self._change(
            "UPDATE sgg_messages SET lease_until = now() WHERE queue_id = %s AND leased_by = %s",
            queue_id,
            self.node,
        )

    async def reclaim(self) -> list[str]:
        return await self.cluster.reclaim()

    async def _change(self, statement: LiteralString, *parameters: object) -> bool:
        """One guarded change of state and, when it changed a row, a notification (a slot or a
        message is free) — one statement, so one round trip and one transaction."""
        query = sql.SQL(
            "WITH changed AS ({} RETURNING 1) SELECT count(*) AS n,"
            " CASE WHEN count(*) > 0 THEN pg_notify('sgg_queue', '') END AS notified"
            " FROM changed"
        ).format(sql.SQL(statement))
        async with self.db.connection() as connection:
            cursor = await connection.execute(query, parameters)
            row = await cursor.fetchone()
        return row is not None and int(row["n"]) > 0

    # -- reading and administration ------------------------------------------------------------

    async def state_of(self, queue_id: str) -> str | None:
        if not is_queue_id(queue_id):
            return None
        async with self.db.connection() as connection:
            row = await one(
                connection,
                "SELECT state FROM sgg_messages WHERE queue_id = %s AND state <> 'receiving'",
                queue_id,
            )
        return None if row is None else str(row["state"])

    async def entries(self, state: str | None = None) -> list[Entry]:
        return await reading.entries(self.db, state)

    async def ids(self, state: str | None = None) -> list[tuple[str, str]]:
        return await reading.ids(self.db, state)

    async def listing(self, state: str | None = None) -> list[Listed]:
        return await reading.listing(self.db, state)

    async def show(self, queue_id: str) -> dict[str, Any] | None:
        return await reading.show(self.db, queue_id)

    async def attempts(self, queue_id: str) -> list[Record]:
        info = await self.show(queue_id)
        return [] if info is None else list(info["attempts"])

    async def requeue(self, queue_id: str) -> bool:
        return await self._change(
            "UPDATE sgg_messages SET state = 'queue', next_attempt = now(), hold_reason = NULL,"
            " changed_at = now() WHERE queue_id = %s AND state IN ('queue', 'hold')",
            queue_id,
        )

    # -- outages (the delivery engine's; see gateway.delivery.outages) -------------------------

    # A message waits for its tenant's outage while its latest attempt record names the tenant
    # under "outage" (the disposition writes it); meanwhile it is due only after retry_max.

    async def release_outage(self, tenant: str) -> int:
        """Every message `tenant`'s outage deferred is due now; how many."""
        async with self.db.connection() as connection:
            cursor = await connection.execute(
                "UPDATE sgg_messages SET next_attempt = now(), changed_at = now()"
                " WHERE state = 'queue' AND next_attempt > now()"
                " AND attempts -> -1 ->> 'outage' = %s",
                (tenant,),
            )
            count = cursor.rowcount
            if count > 0:
                await connection.execute("SELECT pg_notify('sgg_queue', '')")
        return max(0, count)

    async def probe_outage(self, tenant: str) -> bool:
        """The earliest message `tenant`'s outage deferred is due now (False: none waits)."""
        return await self._change(
            "UPDATE sgg_messages SET next_attempt = now(), changed_at = now() WHERE queue_id ="
            " (SELECT queue_id FROM sgg_messages WHERE state = 'queue' AND next_attempt > now()"
            "  AND attempts -> -1 ->> 'outage' = %s"
            "  ORDER BY next_attempt LIMIT 1 FOR UPDATE SKIP LOCKED)",
            tenant,
        )

    async def delete(self, queue_id: str) -> bool:
        return await self._change(
            "DELETE FROM sgg_messages WHERE queue_id = %s"
            " AND state IN ('queue', 'hold', 'corrupt')",
            queue_id,
        )

    # -- moving a queue ------------------------------------------------------------------------

    async def export(self, queue_id: str) -> Exported | None:
        return await moving.export(self, queue_id)

    async def adopt(self, message: Exported) -> bool:
        return await moving.adopt(self, message)

    async def live_nodes(self) -> list[str]:
        """The nodes whose heartbeat is recent (within three leases): a cluster that runs."""
        async with self.db.connection() as connection:
            cursor = await connection.execute(
                "SELECT node FROM sgg_nodes WHERE heartbeat > now() - %s * interval '1 second'"
                " ORDER BY node",
                (3 * self.settings.lease,),
            )
            return [row["node"] for row in await cursor.fetchall()]

    # -- health --------------------------------------------------------------------------------

    async def census(self) -> dict[str, object]:
        async with self.db.connection() as connection:
            cursor = await connection.execute(
                "SELECT state, count(*) AS n FROM sgg_messages WHERE state <> 'receiving'"
                " GROUP BY state"
            )
            counts = {row["state"]: int(row["n"]) for row in await cursor.fetchall()}
            oldest = await one(
                connection,
                "SELECT extract(epoch FROM now() - min(received_at))::float8 AS age,"
                " (SELECT count(*) FROM sgg_nodes WHERE heartbeat > now() - %s"
                " * interval '1 second') AS nodes"
                " FROM sgg_messages WHERE state IN ('queue', 'active')",
                3 * self.settings.lease,
            )
        states = {state: counts.get(state, 0) for state in ("queue", "active", "hold", "corrupt")}
        self.cluster.waiting = states["queue"] + states["active"] + states["hold"]
        age = oldest["age"] if oldest is not None and oldest["age"] is not None else 0.0
        nodes = int(oldest["nodes"]) if oldest is not None else 0
        return {"states": states, "oldest_age": max(0.0, float(age)), "nodes": nodes}

    def available(self) -> bool:
        return self.db.reachable

    def problem(self) -> str | None:
        if not self.db.reachable:
            return self.db.problem
        if self.cluster.waiting >= self._max_messages:
            return f"{self.cluster.waiting} messages in the cluster's queue (spool.max_messages)"
        return None

    def readiness(self) -> dict[str, bool]:
        return {"queue": self.db.reachable}

    def on_wake(self, callback: Callable[[], None]) -> None:
        """Call `callback` when a message may have become claimable (a notification)."""
        self.cluster.wakers.append(callback)


def _work_directory(directory: Path) -> None:
    """Create the folder large bodies are read back into (nothing stays in it)."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise SpoolError(
            f"cannot create {directory} (spool.directory: where large messages are read back "
            f"to before upload): {error.strerror or error}"
        ) from None


def _anonymous_file(directory: Path, queue_id: str) -> int:
    """A descriptor of a new file in `directory` that no name leads to (nothing is left behind
    when it is closed, or when the process dies)."""
    fd, name = tempfile.mkstemp(prefix=f"{queue_id}.", dir=directory)
    Path(name).unlink()
    return fd
