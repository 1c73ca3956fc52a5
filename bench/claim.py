"""The cost of a claim (`sgg_claim`) when one mailbox has a backlog it may not send now.

A scanner's batch of thousands of messages for one mailbox in a Retry-After window (or at its
four in flight): the claim must still find the other mailboxes' mail, and quickly. For each
backlog size, the time of one claim that finds another mailbox's message, and of one that
finds nothing (what an idle worker pays), over `--claims` claims each.

Run: .venv/bin/python bench/claim.py [--dsn postgresql://127.0.0.1/postgres] [--claims 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster import scratch_database

from gateway.pgqueue.schema import MIGRATIONS, SCHEMA_VERSION

CLAIM = "SELECT queue_id FROM sgg_claim('bench/1', interval '30 seconds', 1000000, 1000000, 4, 0)"


def timed(connection: psycopg.Connection, statement: str, times: int) -> list[float]:
    found = []
    for _ in range(times):
        started = time.perf_counter()
        connection.execute(statement).fetchall()
        found.append((time.perf_counter() - started) * 1000)
        connection.execute(
            "UPDATE sgg_messages SET state = 'queue', leased_by = NULL, lease_until = NULL"
            " WHERE leased_by = 'bench/1'"
        )
    return found


def run(dsn: str, backlog: int, claims: int) -> tuple[float, float, float]:
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as connection:
        connection.execute("DELETE FROM sgg_messages")
        connection.execute("DELETE FROM sgg_mailboxes")
        connection.execute(
            "INSERT INTO sgg_messages (queue_id, state, envelope, size, mailbox, next_attempt)"
            " SELECT 'B' || n, 'queue', '{}', 4096, 'batch@contoso.com',"
            " now() - interval '1 hour' + n * interval '1 ms' FROM generate_series(1, %s) n",
            (backlog,),
        )
        connection.execute(
            "INSERT INTO sgg_mailboxes (mailbox, blocked_until)"
            " VALUES ('batch@contoso.com', 'infinity')"
        )
        connection.execute("ANALYZE sgg_messages")
        empty = timed(connection, CLAIM, claims)
        connection.execute(
            "INSERT INTO sgg_messages (queue_id, state, envelope, size, mailbox)"
            " VALUES ('OTHER', 'queue', '{}', 4096, 'mfp@contoso.com')"
        )
        found = timed(connection, CLAIM, claims)
    return (
        statistics.median(found),
        statistics.quantiles(found, n=100)[98],
        statistics.median(empty),
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default="postgresql://127.0.0.1/postgres")
    parser.add_argument("--claims", type=int, default=200)
    arguments = parser.parse_args()
    async with scratch_database(arguments.dsn) as dsn:
        await asyncio.to_thread(measure, dsn, arguments.claims)


def measure(dsn: str, claims: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as connection:
        for version in sorted(MIGRATIONS):
            connection.execute(MIGRATIONS[version].encode())
        connection.execute("UPDATE sgg_schema SET version = %s", (SCHEMA_VERSION,))
    print(f"schema v{SCHEMA_VERSION}, {claims} claims per row")
    for backlog in (0, 1_000, 10_000, 50_000):
        found_p50, found_p99, empty_p50 = run(dsn, backlog, claims)
        print(
            f"backlog {backlog:>6} blocked: claim finding another mailbox's message "
            f"p50 {found_p50:6.2f} ms, p99 {found_p99:6.2f} ms; finding nothing "
            f"p50 {empty_p50:6.2f} ms"
        )


if __name__ == "__main__":
    asyncio.run(main())
