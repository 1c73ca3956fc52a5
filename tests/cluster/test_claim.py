"""The claim in the database (`sgg_claim`): a mailbox's rate is so many claims in any minute for
all nodes together (version 2; the migration from version 1 keeps what was there); a mailbox
that may not send hides no other mailbox's mail, and a claim never waits for a second
mailbox's lock (version 3)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from gateway.config import PostgresSettings, Secret
from gateway.pgqueue.queue import PgQueue
from gateway.pgqueue.schema import MIGRATIONS, SCHEMA_VERSION


def claim(
    connection: psycopg.Connection, rate: int, node: str = "node-a/1", *, per_mailbox: int = 10
) -> str | None:
    row = connection.execute(
        "SELECT queue_id FROM sgg_claim(%s, interval '30 seconds', 1000000, 1000000, %s, %s)",
        (node, per_mailbox, rate),
    ).fetchone()
    return None if row is None else str(row["queue_id"])


def queue(connection: psycopg.Connection, mailbox: str, count: int) -> None:
    for index in range(count):
        connection.execute(
            "INSERT INTO sgg_messages (queue_id, state, envelope, size, mailbox, next_attempt)"
            " VALUES (%s, 'queue', '{}', 10, %s, now() - interval '1 second')",
            (f"{mailbox.split('@', maxsplit=1)[0].upper()}{index:04d}", mailbox),
        )


def test_version_2_keeps_a_minute_per_mailbox_for_every_node(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True, row_factory=dict_row) as connection:
        connection.execute(MIGRATIONS[1].encode())
        connection.execute("UPDATE sgg_schema SET version = 1")
        connection.execute(
            "INSERT INTO sgg_mailboxes (mailbox, blocked_until) VALUES"
            " ('old@contoso.com', now() + interval '1 hour')"
        )
        connection.execute(MIGRATIONS[2].encode())
        kept = connection.execute(
            "SELECT sent, blocked_until > now() AS blocked FROM sgg_mailboxes"
            " WHERE mailbox = 'old@contoso.com'"
        ).fetchone()
        assert kept == {"sent": [], "blocked": True}  # a Retry-After window survives

        queue(connection, "erp@contoso.com", 5)
        # Three a minute: two nodes claiming in turn get three between them, then none.
        claimed = [claim(connection, 3, node=f"node-{'ab'[i % 2]}/1") for i in range(5)]
        assert [c is not None for c in claimed] == [True, True, True, False, False]

        # A minute later (the claims moved back 61 s) the mailbox has its minute again.
        connection.execute(
            "UPDATE sgg_mailboxes SET sent = ARRAY(SELECT t - interval '61 seconds'"
            " FROM unnest(sent) AS u(t)), next_slot = next_slot - interval '61 seconds'"
        )
        assert claim(connection, 3) is not None
        assert claim(connection, 3) is not None
        assert claim(connection, 3) is None  # all five claimed: nothing left

        # Rate 0: unpaced, only the in-flight limit (10 here) holds.
        queue(connection, "mfp@contoso.com", 12)
        unpaced = [claim(connection, 0) for _ in range(12)]
        assert sum(c is not None for c in unpaced) == 10


def current(connection: psycopg.Connection) -> None:
    """Every migration, in order, as `db upgrade` applies them."""
    for version in sorted(MIGRATIONS):
        connection.execute(MIGRATIONS[version].encode())
    connection.execute("UPDATE sgg_schema SET version = %s", (SCHEMA_VERSION,))


def mailbox_lock(connection: psycopg.Connection, mailbox: str, *, take: bool) -> None:
    """Hold (or let go of) the lock a claim takes while it decides for `mailbox`."""
    function = "pg_advisory_lock" if take else "pg_advisory_unlock"
    connection.execute(f"SELECT {function}(hashtext('sgg_mailbox:' || %s))", (mailbox,))


@pytest.mark.parametrize("limit", ["retry-after", "paced", "four in flight"])
def test_a_mailbox_that_may_not_send_hides_no_other_mail(pg_dsn: str, limit: str) -> None:
    """70 due messages of one mailbox that may not send now (more than a claim looks at) and
    one of another mailbox, due later: the other one is claimed."""
    with psycopg.connect(pg_dsn, autocommit=True, row_factory=dict_row) as connection:
        current(connection)
        connection.execute(
            "INSERT INTO sgg_messages (queue_id, state, envelope, size, mailbox, next_attempt)"
            " SELECT 'X' || n, 'queue', '{}', 10, 'batch@contoso.com',"
            " now() - interval '10 minutes' + n * interval '1 ms' FROM generate_series(1, 70) n"
        )
        queue(connection, "mfp@contoso.com", 1)
        if limit == "four in flight":
            connection.execute(
                "INSERT INTO sgg_messages (queue_id, state, envelope, size, mailbox, leased_by,"
                " lease_until) SELECT 'A' || n, 'active', '{}', 10, 'batch@contoso.com',"
                " 'node-b/1', now() + interval '1 minute' FROM generate_series(1, 4) n"
            )
        else:
            connection.execute(
                "INSERT INTO sgg_mailboxes (mailbox, blocked_until, next_slot)"
                " VALUES ('batch@contoso.com', %s, %s)",
                ("infinity", "-infinity") if limit == "retry-after" else ("-infinity", "infinity"),
            )
        assert claim(connection, 0, per_mailbox=4) == "MFP0000"
        assert claim(connection, 0, per_mailbox=4) is None  # the batch waits, all 70 of it
        waiting = connection.execute(
            "SELECT count(*) AS n FROM sgg_messages WHERE state = 'queue'"
        ).fetchone()
        assert waiting == {"n": 70}


def test_a_claim_never_waits_for_a_second_mailboxs_lock(pg_dsn: str) -> None:
    """Two claims that met two mailboxes in opposite orders used to deadlock (each held one
    mailbox's lock and waited for the other's). Now a claim that already decided about one
    mailbox passes over a mailbox another claim is deciding about, and takes the next."""
    with psycopg.connect(pg_dsn, autocommit=True, row_factory=dict_row) as connection:
        current(connection)
        for name in ("first", "second", "third"):  # due in this order
            queue(connection, f"{name}@contoso.com", 1)
            time.sleep(0.01)
    with (
        psycopg.connect(pg_dsn, autocommit=True) as first,
        psycopg.connect(pg_dsn, autocommit=True) as second,
    ):
        mailbox_lock(first, "first@contoso.com", take=True)
        mailbox_lock(second, "second@contoso.com", take=True)  # held to the end
        claimed: list[str | None] = []
        claimer = threading.Thread(
            target=lambda: claimed.append(_claim_row(pg_dsn)), name="claim", daemon=True
        )
        claimer.start()
        deadline = time.monotonic() + 30
        while not first.execute(  # the claim waits for first@'s lock: it holds none yet
            "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        ).fetchone():
            assert time.monotonic() < deadline, "the claim never waited for first@'s lock"
            time.sleep(0.05)
        assert claimed == []
        # Meanwhile first@ got a Retry-After: under its lock the claim finds it may not send.
        first.execute(
            "INSERT INTO sgg_mailboxes (mailbox, blocked_until)"
            " VALUES ('first@contoso.com', now() + interval '1 hour')"
        )
        mailbox_lock(first, "first@contoso.com", take=False)
        claimer.join(10)
        assert not claimer.is_alive(), "the claim waited for second@'s lock while holding one"
        assert claimed == ["THIRD0000"]
        mailbox_lock(second, "second@contoso.com", take=False)
    with psycopg.connect(pg_dsn, autocommit=True, row_factory=dict_row) as connection:
        assert claim(connection, 0) == "SECOND0000"  # passed over, not lost


def _claim_row(dsn: str) -> str | None:
    """A claim on a connection of its own (four in flight per mailbox)."""
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as connection:
        return claim(connection, 0, per_mailbox=4)


async def test_idle_workers_wait_for_what_may_go_instead_of_polling(
    tmp_path: Path, pg_dsn: str
) -> None:
    """A node's idle worker asks when to claim again: never "now" for mail that waits for its
    mailbox (a full mailbox is a notification away, a paced one its slot away), so it sleeps
    instead of claiming in a loop."""
    settings = PostgresSettings(dsn=Secret(pg_dsn), upgrade_schema=True, node="node-a")
    store = PgQueue(settings, directory=tmp_path / "work")
    await store.open()
    try:
        async with store.db.connection() as connection:
            await connection.execute(
                "INSERT INTO sgg_messages (queue_id, state, envelope, size, mailbox, leased_by,"
                " lease_until) SELECT 'A' || n, 'active', '{}', 10, 'full@contoso.com',"
                " 'node-b/1', now() + interval '1 minute' FROM generate_series(1, 4) n"
            )
            await connection.execute(
                "INSERT INTO sgg_messages (queue_id, state, envelope, size, mailbox)"
                " VALUES ('F1', 'queue', '{}', 10, 'full@contoso.com'),"
                " ('B1', 'queue', '{}', 50000000, 'big@contoso.com')"
            )
        cluster = store.cluster
        assert await cluster.claim(1_000_000, 1000, 4, 0) is None
        assert await cluster.next_wake(1_000_000, 1000, 4) is None  # nothing by time alone
        async with store.db.connection() as connection:
            await connection.execute(
                "INSERT INTO sgg_messages (queue_id, state, envelope, size, mailbox)"
                " VALUES ('P1', 'queue', '{}', 10, 'paced@contoso.com')"
            )
            await connection.execute(
                "INSERT INTO sgg_mailboxes (mailbox, next_slot)"
                " VALUES ('paced@contoso.com', now() + interval '20 seconds')"
            )
        wait = await cluster.next_wake(1_000_000, 1000, 4)
        assert wait is not None and 15 < wait <= 20
        assert await cluster.next_wake(100_000_000, 1000, 4) == 0.0  # room: B1 may go now
        assert await cluster.claim(100_000_000, 1000, 4, 0) is not None
    finally:
        await store.close()
        await asyncio.sleep(0)
