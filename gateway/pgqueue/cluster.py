"""One node's part in the cluster: its identity and heartbeat, the leases it renews, the claim,
and the notifications that wake its workers.

- Every `beat` (a third of the lease, at most 5 s) the node renews the leases of the messages
  it is delivering and its heartbeat, and sweeps: leases that have run out (a node died or lost
  the database) go back to the queue, and the half-received messages of nodes whose heartbeat
  stopped are removed. So a killed node's messages are delivered by another within the lease
  and one beat.
- A claim (`sgg_claim`, schema.py) takes the next message this node may deliver, with the
  per-mailbox limits decided in the database for all nodes together.
- `LISTEN sgg_queue` on a connection of its own: every commit, deferral, end of a delivery and
  administrative change notifies, and the workers waiting for work wake at once. A lost
  listener reconnects; a sweep runs then, since notifications were missed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import psycopg
import structlog

from gateway.errors import SpoolError
from gateway.pgqueue.connection import POOL_WAIT, reason, retry_delay

if TYPE_CHECKING:
    from gateway.pgqueue.queue import PgQueue

log = structlog.get_logger("gateway.queue")


class Claimed(NamedTuple):
    """A message claimed (leased) by this node, not yet read."""

    queue_id: str
    envelope: Any
    size: int
    mailbox: str
    attempts: int
    claimed_at: Any = None  # the database's time of the claim (its place in the mailbox's minute)


class Cluster:
    """The node's background work and its claims."""

    def __init__(self, queue: PgQueue) -> None:
        self._queue = queue
        self.held: set[str] = set()  # messages this node is delivering: their leases are renewed
        # Of those, delivered, their rows not removed yet (the database was away): at stop
        # they are removed, not given back.
        self.delivered: set[str] = set()
        self.wakers: list[Callable[[], None]] = []
        self.waiting = 0  # messages in the cluster's queue, as of the last count
        self._tasks: list[asyncio.Task[None]] = []
        self.beat = min(5.0, queue.settings.lease / 3)

    async def start(self) -> None:
        queue = self._queue
        async with queue.db.connection() as connection:
            await connection.execute(
                "INSERT INTO sgg_nodes (node, name) VALUES (%s, %s)",
                (queue.node, queue.node_name),
            )
        log.info(
            "cluster_joined",
            identity=queue.node,
            database=queue.db.where,
            lease_s=queue.settings.lease,
        )
        self._tasks = [
            asyncio.create_task(self._heartbeat(), name="queue-heartbeat"),
            asyncio.create_task(self._listen(), name="queue-listen"),
        ]

    async def stop(self) -> None:
        """Stop the heartbeat and the listener; give back this node's leases and leave."""
        if not self._tasks:
            return  # never joined
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        queue = self._queue
        async with queue.db.connection() as connection:
            if self.delivered:
                await connection.execute(
                    "DELETE FROM sgg_messages WHERE state = 'active' AND leased_by = %s"
                    " AND queue_id = ANY(%s)",
                    (queue.node, list(self.delivered)),
                )
            # Deliveries this node stopped: queued again now, for the other nodes.
            await connection.execute(
                "UPDATE sgg_messages SET state = 'queue', leased_by = NULL, lease_until = NULL,"
                " changed_at = now() WHERE state = 'active' AND leased_by = %s",
                (queue.node,),
            )
            await connection.execute(
                "DELETE FROM sgg_messages WHERE state = 'receiving' AND leased_by = %s",
                (queue.node,),
            )
            await connection.execute("DELETE FROM sgg_nodes WHERE node = %s", (queue.node,))
            await connection.execute("SELECT pg_notify('sgg_queue', '')")
        self.held.clear()
        self.delivered.clear()

    def wake(self) -> None:
        for callback in self.wakers:
            callback()

    # -- the claim -------------------------------------------------------------------------

    async def claim(self, room: int, small: int, per_mailbox: int, rate: int) -> Claimed | None:
        """Lease the next message this node may deliver (None: nothing may go now)."""
        queue = self._queue
        async with queue.db.connection() as connection:
            cursor = await connection.execute(
                "SELECT * FROM sgg_claim(%s, %s * interval '1 second', %s, %s, %s, %s)",
                (queue.node, queue.settings.lease, room, small, per_mailbox, rate),
            )
            row = await cursor.fetchone()
        if row is None:
            return None
        claim = Claimed(
            row["queue_id"],
            row["envelope"],
            row["size"],
            row["mailbox"],
            row["attempts"],
            row["claimed_at"],
        )
        self.held.add(claim.queue_id)
        queue.claimed(claim)
        return claim

    async def next_wake(self, room: int, small: int, per_mailbox: int) -> float | None:
        """Seconds until a queued message may become claimable by its time (its own, its
        mailbox's slot or Retry-After window): 0 when one may go now (a claim running
        meanwhile had it locked). None when none will by time alone: nothing is queued, or
        what is waits for room in this node's memory or for a delivery of its mailbox to end
        (the end of a delivery anywhere is a notification; room here wakes this node)."""
        async with self._queue.db.connection() as connection:
            cursor = await connection.execute(
                "SELECT extract(epoch FROM min(greatest(e.next_attempt,"
                " coalesce(b.next_slot, '-infinity'), coalesce(b.blocked_until, '-infinity')))"
                " - now())::float8 AS wait FROM sgg_queued_mailboxes() AS o (mailbox)"
                " LEFT JOIN sgg_mailboxes b ON b.mailbox = o.mailbox"
                " CROSS JOIN LATERAL (SELECT q.next_attempt FROM sgg_messages q"
                "  WHERE q.state = 'queue' AND q.mailbox = o.mailbox"
                "  AND (q.size <= %(room)s OR q.size <= %(small)s)"
                "  ORDER BY q.next_attempt LIMIT 1) AS e"
                " WHERE o.mailbox = '' OR (SELECT count(*) FROM sgg_messages a"
                "  WHERE a.state = 'active' AND a.mailbox = o.mailbox"
                "  AND a.lease_until > now()) < %(max)s",
                {"room": room, "small": small, "max": per_mailbox},
            )
            row = await cursor.fetchone()
        wait = row["wait"] if row else None
        return None if wait is None else max(0.0, float(wait))

    async def unsent(self, mailbox: str, claimed_at: Any, rate: int) -> None:
        """The service refused the request of the claim at `claimed_at`: nothing was sent, so
        it leaves `mailbox`'s minute (under the mailbox's lock, as the claim takes it)."""
        async with self._queue.db.connection() as connection, connection.transaction():
            await connection.execute(
                "SELECT pg_advisory_xact_lock(hashtext('sgg_mailbox:' || %s))", (mailbox,)
            )
            await connection.execute(
                "UPDATE sgg_mailboxes b SET sent = r.sent, next_slot = CASE"
                " WHEN %(rate)s > 0 AND cardinality(r.sent) >= %(rate)s"
                " THEN r.sent[cardinality(r.sent) - %(rate)s + 1] + interval '1 minute'"
                " ELSE '-infinity' END"
                " FROM (SELECT array_remove(x.sent, %(at)s) AS sent FROM sgg_mailboxes x"
                "  WHERE x.mailbox = %(mailbox)s) AS r WHERE b.mailbox = %(mailbox)s",
                {"rate": rate, "at": claimed_at, "mailbox": mailbox},
            )

    async def block(self, mailbox: str, seconds: float) -> None:
        """Graph said `Retry-After` for `mailbox`: no node sends as it before then."""
        async with self._queue.db.connection() as connection:
            await connection.execute(
                "INSERT INTO sgg_mailboxes AS b (mailbox, blocked_until)"
                " VALUES (%s, now() + %s * interval '1 second')"
                " ON CONFLICT (mailbox) DO UPDATE"
                " SET blocked_until = greatest(b.blocked_until, excluded.blocked_until)",
                (mailbox.lower(), seconds),
            )

    # -- leases --------------------------------------------------------------------------------

    async def reclaim(self, *, patient: bool = True) -> list[str]:
        """Leases that ran out go back to the queue (due now); their IDs.

        Never the messages this node is delivering. And after an outage (`patient`), only its
        own until the others have had time to come back: everyone's leases ran out, but the
        other nodes may be delivering theirs still and renew them once they find the database
        again; taking them now would deliver those messages twice. So while this node found
        the database again, or the database server started, less than a lease, a pooled
        connection's wait and a beat ago (the most a live node needs to renew), lapsed leases
        of other nodes stay; a node that does not come back has its leases taken after that.
        """
        queue, db = self._queue, self._queue.db
        patience = queue.settings.lease + POOL_WAIT + self.beat
        regained = db.regained_at
        others = not patient or (
            db.reachable and (regained is None or time.monotonic() - regained >= patience)
        )
        async with db.connection() as connection:
            cursor = await connection.execute(
                "UPDATE sgg_messages m SET state = 'queue', leased_by = NULL, lease_until = NULL,"
                " next_attempt = now(), changed_at = now()"
                " FROM (SELECT queue_id, leased_by FROM sgg_messages"
                "       WHERE state = 'active' AND lease_until < now()"
                "       AND (leased_by = %(node)s OR (%(others)s AND now()"
                "            - pg_postmaster_start_time() >= %(patience)s * interval '1 second'))"
                "       AND NOT (queue_id = ANY(%(held)s))"
                "       FOR UPDATE SKIP LOCKED) lapsed"
                " WHERE m.queue_id = lapsed.queue_id"
                " RETURNING m.queue_id, lapsed.leased_by",
                {
                    "node": queue.node,
                    "others": others,
                    "held": list(self.held),
                    "patience": patience,
                },
            )
            rows = await cursor.fetchall()
            if rows:
                await connection.execute("SELECT pg_notify('sgg_queue', '')")
        for row in rows:
            log.warning(
                "lease_taken_over",
                queue_id=row["queue_id"],
                holder=row["leased_by"],
                action="its node stopped renewing it; another node delivers it",
            )
        return [row["queue_id"] for row in rows]

    async def _heartbeat(self) -> None:
        queue = self._queue
        while True:
            try:
                async with queue.db.connection() as connection:
                    # An upsert: a node cut off for ten leases was removed by the others, and
                    # comes back (its half-received rows are swept by its heartbeat again).
                    await connection.execute(
                        "INSERT INTO sgg_nodes (node, name) VALUES (%s, %s)"
                        " ON CONFLICT (node) DO UPDATE SET heartbeat = now()",
                        (queue.node, queue.node_name),
                    )
                    if self.held:
                        await connection.execute(
                            "UPDATE sgg_messages SET lease_until = now() + %s * interval '1 second'"
                            " WHERE state = 'active' AND leased_by = %s AND queue_id = ANY(%s)",
                            (queue.settings.lease, queue.node, list(self.held)),
                        )
                    await connection.execute(
                        "DELETE FROM sgg_messages WHERE state = 'receiving' AND leased_by IN"
                        " (SELECT node FROM sgg_nodes WHERE heartbeat < now() - %s * interval"
                        " '1 second')",
                        (3 * queue.settings.lease,),
                    )
                    await connection.execute(
                        "DELETE FROM sgg_nodes WHERE heartbeat < now() - %s * interval '1 second'",
                        (10 * queue.settings.lease,),
                    )
                if await self.reclaim():
                    self.wake()
                await queue.census()  # the cluster-wide count for spool.max_messages
            except (SpoolError, psycopg.Error) as error:
                log.debug("heartbeat_failed", reason=reason(error))
            await asyncio.sleep(self.beat)

    async def _listen(self) -> None:
        attempt = 0
        while True:
            try:
                connection = await self._queue.db.listen("sgg_queue")
            except psycopg.Error as error:
                # (Not `db.lost`: the pool's own calls say whether the database is away; a
                # listener that cannot connect, a connection limit say, must not make the node
                # refuse mail or start its reclaim patience over.)
                if attempt == 0:
                    log.warning(
                        "listener_unavailable",
                        reason=reason(error),
                        action="new mail is found by the 10 s sweep until it is back",
                    )
                attempt += 1
                await retry_delay(attempt)
                continue
            attempt = 0
            self.wake()  # notifications may have been missed while it was away
            try:
                async for _notify in connection.notifies():
                    self.wake()
            except psycopg.Error as error:
                log.debug("listener_lost", reason=reason(error))
            finally:
                with contextlib.suppress(psycopg.Error):
                    await connection.close()

    def log_corrupt(self, queue_id: str, why: str) -> None:
        log.error(
            "spool_corrupt",
            queue_id=queue_id,
            reason=why,
            action="set aside as corrupt in the database; it is never delivered",
        )
