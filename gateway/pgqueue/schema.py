"""The cluster queue's tables, as numbered migrations, and how a gateway checks them.

`smtp-graph-gateway db upgrade` applies what a database lacks, each migration in a transaction
of its own, under an advisory lock (two nodes upgrading at once take turns). A gateway refuses
a database whose schema is newer than it knows (a newer version wrote it) and, unless
`spool.postgresql.upgrade_schema` is set, one that is older.

The tables:
- `sgg_messages`: one row per message: its state (`receiving` while DATA arrives, then `queue`,
  `active` while a node holds its lease, `hold`, `corrupt`), envelope, size, the mailbox it is
  sent as (for the per-mailbox limits), next attempt, lease (holder, until), attempt history,
  hold reason.
- `sgg_chunks`: the message's bytes in rows of about 1 MiB, removed with it.
- `sgg_nodes`: each gateway process (name and a per-start id) and its heartbeat.
- `sgg_mailboxes`: per sending mailbox, its claims of the last minute (`sent`, from version 2),
  when it may send next (`next_slot`) and the end of a Retry-After window.
- `sgg_claim()`: the claim, in one round trip (see `dispatch.py`); version 3 looks past the
  mailboxes that may not send now, and never waits for a second mailbox's lock.
"""

from __future__ import annotations

import psycopg
import structlog

from gateway.errors import QueueRefused, SpoolError
from gateway.pgqueue.connection import Connection, Database, reason, retry_delay

log = structlog.get_logger("gateway.queue")
SCHEMA_VERSION = 3


class SchemaError(SpoolError):
    """The database's schema does not fit this gateway (what to run is in the message)."""


UPGRADE_LOCK = 0x5347_4701  # pg_advisory_lock key held while migrations run ("SGG", 1)

MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE IF NOT EXISTS sgg_schema (version integer NOT NULL);
INSERT INTO sgg_schema SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM sgg_schema);

CREATE TABLE sgg_nodes (
    node text PRIMARY KEY,
    name text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sgg_messages (
    queue_id text PRIMARY KEY,
    state text NOT NULL
        CHECK (state IN ('receiving', 'queue', 'active', 'hold', 'corrupt')),
    envelope jsonb,
    size bigint NOT NULL DEFAULT 0,
    mailbox text NOT NULL DEFAULT '',
    next_attempt timestamptz NOT NULL DEFAULT now(),
    leased_by text,
    lease_until timestamptz,
    attempts jsonb NOT NULL DEFAULT '[]'::jsonb,
    hold_reason jsonb,
    received_at timestamptz NOT NULL DEFAULT now(),
    changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sgg_messages_due ON sgg_messages (next_attempt, queue_id) WHERE state = 'queue';
CREATE INDEX sgg_messages_leases ON sgg_messages (lease_until) WHERE state = 'active';
CREATE INDEX sgg_messages_active_mailbox ON sgg_messages (mailbox) WHERE state = 'active';
CREATE INDEX sgg_messages_receiving ON sgg_messages (leased_by) WHERE state = 'receiving';
CREATE INDEX sgg_messages_received ON sgg_messages (received_at);

CREATE TABLE sgg_chunks (
    queue_id text NOT NULL REFERENCES sgg_messages (queue_id) ON DELETE CASCADE,
    seq integer NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (queue_id, seq)
);

CREATE TABLE sgg_mailboxes (
    mailbox text PRIMARY KEY,
    next_slot timestamptz NOT NULL DEFAULT '-infinity',
    blocked_until timestamptz NOT NULL DEFAULT '-infinity'
);

-- Claim the next message this node may deliver now, and lease it: due, no bigger than the room
-- the node has in memory (or small), its mailbox outside a Retry-After window, past its paced
-- slot, and with fewer than p_max deliveries in flight on all nodes together. Candidates are
-- taken with SKIP LOCKED (nodes never wait for each other's rows); the mailbox checks run under
-- a transaction-level advisory lock on the mailbox, so two nodes cannot both see three in
-- flight and both take a fourth and fifth.
CREATE FUNCTION sgg_claim(
    p_node text, p_lease interval, p_room bigint, p_small bigint, p_max integer,
    p_interval interval
) RETURNS TABLE (queue_id text, envelope jsonb, size bigint, mailbox text, attempts integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    candidate record;
    box record;
    busy integer;
BEGIN
    FOR candidate IN
        SELECT m.queue_id, m.mailbox FROM sgg_messages m
        WHERE m.state = 'queue' AND m.next_attempt <= now()
          AND (m.size <= p_room OR m.size <= p_small)
        ORDER BY m.next_attempt, m.queue_id
        LIMIT 64
        FOR UPDATE SKIP LOCKED
    LOOP
        IF candidate.mailbox <> '' THEN
            PERFORM pg_advisory_xact_lock(hashtext('sgg_mailbox:' || candidate.mailbox));
            SELECT b.next_slot, b.blocked_until INTO box
                FROM sgg_mailboxes b WHERE b.mailbox = candidate.mailbox;
            IF FOUND AND (box.blocked_until > now() OR box.next_slot > now()) THEN
                CONTINUE;
            END IF;
            SELECT count(*) INTO busy FROM sgg_messages a
                WHERE a.state = 'active' AND a.mailbox = candidate.mailbox
                  AND a.lease_until > now();
            IF busy >= p_max THEN
                CONTINUE;
            END IF;
            IF p_interval > interval '0' THEN
                INSERT INTO sgg_mailboxes AS b (mailbox, next_slot)
                    VALUES (candidate.mailbox, now() + p_interval)
                    ON CONFLICT ON CONSTRAINT sgg_mailboxes_pkey DO UPDATE
                    SET next_slot = greatest(b.next_slot, now()) + p_interval;
            END IF;
        END IF;
        RETURN QUERY
            UPDATE sgg_messages m
            SET state = 'active', leased_by = p_node, lease_until = now() + p_lease,
                changed_at = now()
            WHERE m.queue_id = candidate.queue_id
            RETURNING m.queue_id, m.envelope, m.size, m.mailbox,
                      jsonb_array_length(m.attempts);
        RETURN;
    END LOOP;
END;
$$;
""",
    # Version 2: a mailbox's rate as Exchange counts it, so many in any minute, instead of one
    # every 60/rate seconds: a burst within the rate goes at once (mail that waited out an
    # outage too), and the minute stays shared by every node.
    2: """
ALTER TABLE sgg_mailboxes ADD COLUMN sent timestamptz[] NOT NULL DEFAULT '{}';
DROP FUNCTION sgg_claim(text, interval, bigint, bigint, integer, interval);

-- Claim the next message this node may deliver now, and lease it: due, no bigger than the room
-- the node has in memory (or small), its mailbox outside a Retry-After window, with fewer than
-- p_rate claims in the last minute (p_rate 0: unpaced), and with fewer than p_max deliveries
-- in flight on all nodes together. Candidates are taken with SKIP LOCKED (nodes never wait for
-- each other's rows); the mailbox checks run under a transaction-level advisory lock on the
-- mailbox, so two nodes cannot both see three in flight and both take a fourth and fifth. A
-- claim records its time in the mailbox's `sent` (and returns it: a request the service
-- refused leaves the minute again); once the minute holds p_rate, `next_slot` is when the
-- oldest of them leaves it.
CREATE FUNCTION sgg_claim(
    p_node text, p_lease interval, p_room bigint, p_small bigint, p_max integer,
    p_rate integer
) RETURNS TABLE (
    queue_id text, envelope jsonb, size bigint, mailbox text, attempts integer,
    claimed_at timestamptz
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    candidate record;
    box record;
    busy integer;
    recent timestamptz[];
BEGIN
    FOR candidate IN
        SELECT m.queue_id, m.mailbox FROM sgg_messages m
        WHERE m.state = 'queue' AND m.next_attempt <= now()
          AND (m.size <= p_room OR m.size <= p_small)
        ORDER BY m.next_attempt, m.queue_id
        LIMIT 64
        FOR UPDATE SKIP LOCKED
    LOOP
        IF candidate.mailbox <> '' THEN
            PERFORM pg_advisory_xact_lock(hashtext('sgg_mailbox:' || candidate.mailbox));
            SELECT b.next_slot, b.blocked_until, b.sent INTO box
                FROM sgg_mailboxes b WHERE b.mailbox = candidate.mailbox;
            IF FOUND AND (box.blocked_until > now() OR box.next_slot > now()) THEN
                CONTINUE;
            END IF;
            SELECT count(*) INTO busy FROM sgg_messages a
                WHERE a.state = 'active' AND a.mailbox = candidate.mailbox
                  AND a.lease_until > now();
            IF busy >= p_max THEN
                CONTINUE;
            END IF;
            IF p_rate > 0 THEN
                SELECT coalesce(array_agg(u.t ORDER BY u.t), '{}') INTO recent
                    FROM unnest(coalesce(box.sent, '{}') || now()) AS u(t)
                    WHERE u.t > now() - interval '1 minute';
                INSERT INTO sgg_mailboxes AS b (mailbox, sent, next_slot)
                    VALUES (candidate.mailbox, recent, '-infinity')
                    ON CONFLICT ON CONSTRAINT sgg_mailboxes_pkey DO UPDATE SET sent = recent;
                IF cardinality(recent) >= p_rate THEN
                    UPDATE sgg_mailboxes b
                        SET next_slot = recent[cardinality(recent) - p_rate + 1]
                            + interval '1 minute'
                        WHERE b.mailbox = candidate.mailbox;
                END IF;
            END IF;
        END IF;
        RETURN QUERY
            UPDATE sgg_messages m
            SET state = 'active', leased_by = p_node, lease_until = now() + p_lease,
                changed_at = now()
            WHERE m.queue_id = candidate.queue_id
            RETURNING m.queue_id, m.envelope, m.size, m.mailbox,
                      jsonb_array_length(m.attempts), now();
        RETURN;
    END LOOP;
END;
$$;
""",
    # Version 3: the claim looks only at messages that may go now. Before, it took the 64
    # earliest due messages and skipped those whose mailbox was paced, in a Retry-After window
    # or at its in-flight limit: 64 due messages of one such mailbox hid every other
    # mailbox's mail from every node until they went. Now it walks the mailboxes that have
    # queued mail (one index probe each, however deep a mailbox's backlog: see
    # bench/claim.py), leaves out those that may not send, and takes the earliest due
    # messages of the others. And it waited for each candidate's mailbox lock while holding
    # the previous one's, so two claims meeting two mailboxes in opposite orders could
    # deadlock; now a claim waits for a mailbox's lock only while it holds none (it passes
    # over one another claim is deciding about), so no cycle can form.
    # `sgg_claim` keeps its signature: nodes of version 2 keep claiming while a node upgrades.
    3: """
CREATE INDEX sgg_messages_queued_mailbox ON sgg_messages (mailbox, next_attempt, queue_id)
    WHERE state = 'queue';
-- Replaced by the one above: given both, the planner would walk a mailbox's messages in the
-- whole queue's order (through every message of a backlogged mailbox) to find the first few.
DROP INDEX sgg_messages_due;

-- The mailboxes that have queued mail, one index probe each (a loose index scan).
CREATE FUNCTION sgg_queued_mailboxes() RETURNS SETOF text
LANGUAGE sql STABLE ROWS 20 AS $$
    WITH RECURSIVE boxes (mailbox) AS (
        (SELECT q.mailbox FROM sgg_messages q WHERE q.state = 'queue'
         ORDER BY q.mailbox LIMIT 1)
        UNION ALL
        SELECT (SELECT q.mailbox FROM sgg_messages q
                WHERE q.state = 'queue' AND q.mailbox > boxes.mailbox
                ORDER BY q.mailbox LIMIT 1)
        FROM boxes WHERE boxes.mailbox IS NOT NULL
    )
    SELECT boxes.mailbox FROM boxes WHERE boxes.mailbox IS NOT NULL
$$;

-- Of those, the ones that may send now: outside a Retry-After window, past their paced slot,
-- with fewer than p_max deliveries in flight on all nodes ('' has no limits).
CREATE FUNCTION sgg_open_mailboxes(p_max integer) RETURNS SETOF text
LANGUAGE sql STABLE ROWS 20 AS $$
    SELECT o.mailbox FROM sgg_queued_mailboxes() AS o (mailbox)
    LEFT JOIN sgg_mailboxes b ON b.mailbox = o.mailbox
    WHERE (b.mailbox IS NULL OR (b.blocked_until <= now() AND b.next_slot <= now()))
      AND (o.mailbox = '' OR (SELECT count(*) FROM sgg_messages a
                              WHERE a.state = 'active' AND a.mailbox = o.mailbox
                                AND a.lease_until > now()) < p_max)
$$;

CREATE OR REPLACE FUNCTION sgg_claim(
    p_node text, p_lease interval, p_room bigint, p_small bigint, p_max integer,
    p_rate integer
) RETURNS TABLE (
    queue_id text, envelope jsonb, size bigint, mailbox text, attempts integer,
    claimed_at timestamptz
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    candidate record;
    box record;
    busy integer;
    recent timestamptz[];
    locked integer := 0;
BEGIN
    FOR candidate IN
        SELECT m.queue_id, m.mailbox
        FROM sgg_open_mailboxes(p_max) AS o (mailbox)
        CROSS JOIN LATERAL (
            SELECT q.queue_id FROM sgg_messages q
            WHERE q.state = 'queue' AND q.mailbox = o.mailbox AND q.next_attempt <= now()
              AND (q.size <= p_room OR q.size <= p_small)
            ORDER BY q.next_attempt, q.queue_id
            LIMIT 16
        ) AS e
        JOIN sgg_messages m ON m.queue_id = e.queue_id
        WHERE m.state = 'queue'
        ORDER BY m.next_attempt, m.queue_id
        LIMIT 64
        FOR UPDATE OF m SKIP LOCKED
    LOOP
        IF candidate.mailbox <> '' THEN
            IF locked = 0 THEN
                PERFORM pg_advisory_xact_lock(hashtext('sgg_mailbox:' || candidate.mailbox));
            ELSIF NOT pg_try_advisory_xact_lock(hashtext('sgg_mailbox:' || candidate.mailbox))
            THEN
                CONTINUE;  -- another claim decides for this mailbox now
            END IF;
            locked := locked + 1;
            -- Checked again under the lock: the candidates' snapshot may be out of date.
            SELECT b.next_slot, b.blocked_until, b.sent INTO box
                FROM sgg_mailboxes b WHERE b.mailbox = candidate.mailbox;
            IF FOUND AND (box.blocked_until > now() OR box.next_slot > now()) THEN
                CONTINUE;
            END IF;
            SELECT count(*) INTO busy FROM sgg_messages a
                WHERE a.state = 'active' AND a.mailbox = candidate.mailbox
                  AND a.lease_until > now();
            IF busy >= p_max THEN
                CONTINUE;
            END IF;
            IF p_rate > 0 THEN
                SELECT coalesce(array_agg(u.t ORDER BY u.t), '{}') INTO recent
                    FROM unnest(coalesce(box.sent, '{}') || now()) AS u(t)
                    WHERE u.t > now() - interval '1 minute';
                INSERT INTO sgg_mailboxes AS b (mailbox, sent, next_slot)
                    VALUES (candidate.mailbox, recent, '-infinity')
                    ON CONFLICT ON CONSTRAINT sgg_mailboxes_pkey DO UPDATE SET sent = recent;
                IF cardinality(recent) >= p_rate THEN
                    UPDATE sgg_mailboxes b
                        SET next_slot = recent[cardinality(recent) - p_rate + 1]
                            + interval '1 minute'
                        WHERE b.mailbox = candidate.mailbox;
                END IF;
            END IF;
        END IF;
        RETURN QUERY
            UPDATE sgg_messages m
            SET state = 'active', leased_by = p_node, lease_until = now() + p_lease,
                changed_at = now()
            WHERE m.queue_id = candidate.queue_id
            RETURNING m.queue_id, m.envelope, m.size, m.mailbox,
                      jsonb_array_length(m.attempts), now();
        RETURN;
    END LOOP;
END;
$$;
""",
}


async def schema_version(connection: Connection) -> int:
    """The version of the gateway's tables in this database (0: none yet)."""
    try:
        cursor = await connection.execute("SELECT max(version) AS version FROM sgg_schema")
    except psycopg.errors.UndefinedTable:
        return 0
    row = await cursor.fetchone()
    return int(row["version"] or 0) if row else 0


async def upgrade(connection: Connection) -> list[int]:
    """Apply the migrations the database lacks, in order, each in its own transaction, under
    an advisory lock; the versions applied."""
    applied = []
    await connection.execute("SELECT pg_advisory_lock(%s)", (UPGRADE_LOCK,))
    try:
        current = await schema_version(connection)
        for version in sorted(MIGRATIONS):
            if version <= current:
                continue
            async with connection.transaction():
                await connection.execute(MIGRATIONS[version].encode())
                await connection.execute("UPDATE sgg_schema SET version = %s", (version,))
            applied.append(version)
            log.info("schema_upgraded", version=version)
    finally:
        await connection.execute("SELECT pg_advisory_unlock(%s)", (UPGRADE_LOCK,))
    return applied


def _check_version(version: int, *, upgrade_schema: bool) -> None:
    """`SchemaError` unless this gateway may use (or upgrade) a database at `version`."""
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"the queue's database has schema version {version}, newer than this gateway "
            f"knows ({SCHEMA_VERSION}): a newer gateway upgraded it; run that version here too"
        )
    if version < SCHEMA_VERSION and not upgrade_schema:
        raise SchemaError(
            f"the queue's database has schema version {version}, this gateway needs "
            f"{SCHEMA_VERSION}: run `smtp-graph-gateway db upgrade --config FILE` (or set "
            "spool.postgresql.upgrade_schema: true)"
        )


async def open_schema(db: Database, *, upgrade_schema: bool = False, wait: bool = True) -> int:
    """Reach the database (waiting and retrying while `wait`) and check its schema: newer than
    this gateway knows is refused; older is upgraded when allowed, else refused with what to
    run. The version in use."""
    attempt = 0
    while True:
        try:
            async with db.connection() as connection:
                version = await schema_version(connection)
                _check_version(version, upgrade_schema=upgrade_schema)
                if version < SCHEMA_VERSION:
                    await upgrade(connection)
                    version = SCHEMA_VERSION
                return version
        except SchemaError:
            raise
        except QueueRefused:  # reached, but the check failed: waiting will not help
            raise
        except SpoolError as error:
            if not wait:  # one try only (a command)
                raise
            log.warning(
                "queue_waiting",
                database=db.where,
                reason=str(error),
                action="the gateway starts when its database can be reached",
            )
        except psycopg.Error as error:
            raise SpoolError(f"the queue's database refused the check: {reason(error)}") from None
        attempt += 1
        await retry_delay(attempt)
