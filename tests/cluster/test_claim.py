"""The claim in the database (`sgg_claim`, schema version 2): a mailbox's rate is so many claims
in any minute for all nodes together, and the migration from version 1 keeps what was there."""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

from gateway.pgqueue.schema import MIGRATIONS


def claim(connection: psycopg.Connection, rate: int, node: str = "node-a/1") -> str | None:
    row = connection.execute(
        "SELECT queue_id FROM sgg_claim(%s, interval '30 seconds', 1000000, 1000000, 10, %s)",
        (node, rate),
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
