"""`spool migrate`: a file spool with queued, deferred and held mail into PostgreSQL and back,
keeping queue IDs, attempts, next attempts and hold reasons; killed in the middle and run
again, it neither loses nor duplicates a message."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from gateway.spool import Spool
from tests.e2e.test_pipeline import MESSAGE
from tests.support.gateway import arrival, write_config
from tests.support.postgres import cluster_spool

TENANTS = [
    {
        "name": "contoso",
        "tenant_id": "t",
        "client_id": "i",
        "client_secret": "s",
        "domains": ["contoso.com"],
    }
]


def configs(tmp_path: Path, dsn: str) -> tuple[Path, Path]:
    smtp = {"listeners": [{"name": "lan", "port": 0}]}
    files = tmp_path / "files"
    files.mkdir()
    cluster = tmp_path / "cluster"
    cluster.mkdir()
    old = write_config(
        files,
        {"smtp": smtp, "tenants": TENANTS, "spool": {"directory": str(tmp_path / "spool")}},
    )
    new = write_config(
        cluster, {"smtp": smtp, "tenants": TENANTS, "spool": cluster_spool(cluster, dsn)}
    )
    return old, new


def command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def migrate(source: Path, target: Path) -> subprocess.CompletedProcess[str]:
    return command("spool", "migrate", "--from", str(source), "--to", str(target))


def shown(config: Path) -> dict[str, dict[str, Any]]:
    """Every message of a queue as `queue show --json` has it, by queue ID."""
    listed = json.loads(command("queue", "--config", str(config), "list", "--json").stdout)
    found = {}
    for item in listed:
        info = json.loads(
            command("queue", "--config", str(config), "show", item["queue_id"], "--json").stdout
        )
        found[item["queue_id"]] = info
    return found


def fill(directory: Path) -> dict[str, str]:
    """A spool with a queued, a deferred and a held message: their IDs by kind."""
    spool = Spool(directory)
    spool.open()
    try:

        def store(tag: str) -> str:
            return spool.store(
                arrival(
                    "scanner@contoso.com",
                    "alice@contoso.com",
                    "bob@contoso.com",
                    client="printers",
                    peer="192.0.2.7",
                ),
                MESSAGE.replace(b"scan-0001", tag.encode()),
            )

        queued, deferred, held = store("queued"), store("deferred"), store("held")
        assert spool.lease(deferred) is not None
        attempt = {"at": time.time(), "result": "deferred", "reason": "Graph said 503"}
        spool.defer(deferred, time.time() + 3600, {**attempt, "status": 503})
        assert spool.lease(held) is not None
        spool.hold(
            held,
            {"reason": "ErrorSendAsDenied", "code": "ErrorSendAsDenied"},
            attempt={"at": time.time(), "result": "held", "code": "ErrorSendAsDenied"},
        )
    finally:
        spool.close()
    return {"queued": queued, "deferred": deferred, "held": held}


def comparable(info: dict[str, Any]) -> dict[str, Any]:
    """What must survive a move: envelope, state, attempts, next attempt, hold reason."""
    kept = {key: info.get(key) for key in ("queue_id", "state", "envelope", "attempts")}
    if "next_attempt" in info:
        kept["next_attempt"] = round(info["next_attempt"], 3)
    if "hold" in info:
        kept["hold"] = {k: v for k, v in info["hold"].items() if k != "held_at"}
    return kept


async def test_file_spool_to_postgresql_and_back(tmp_path: Path, pg_dsn: str) -> None:
    old, new = configs(tmp_path, pg_dsn)
    ids = fill(tmp_path / "spool")
    before = {queue_id: comparable(info) for queue_id, info in shown(old).items()}
    assert {info["state"] for info in before.values()} == {"queue", "hold"}

    moved = await asyncio.to_thread(migrate, old, new)
    assert moved.returncode == 0, moved.stderr
    assert "moved 3 messages" in moved.stdout
    in_database = {queue_id: comparable(info) for queue_id, info in shown(new).items()}
    assert in_database == before
    assert shown(old) == {}
    with psycopg.connect(pg_dsn) as connection:
        rows = connection.execute("SELECT DISTINCT mailbox FROM sgg_messages").fetchall()
    assert rows == [("scanner@contoso.com",)]  # the cluster limits it by the mailbox it sends as

    back = await asyncio.to_thread(migrate, new, old)
    assert back.returncode == 0, back.stderr
    assert {queue_id: comparable(info) for queue_id, info in shown(old).items()} == before
    assert shown(new) == {}
    assert ids["held"] in before and before[ids["held"]]["attempts"][0]["code"] == (
        "ErrorSendAsDenied"
    )


async def test_an_interrupted_migration_run_again_loses_and_duplicates_nothing(
    tmp_path: Path, pg_dsn: str
) -> None:
    old, new = configs(tmp_path, pg_dsn)
    spool = Spool(tmp_path / "spool")
    spool.open()
    stored = {
        spool.store(
            arrival(client="printers", peer="192.0.2.7"),
            MESSAGE.replace(b"scan-0001", f"scan-{n:04d}".encode()),
        )
        for n in range(300)
    }
    spool.close()
    assert command("db", "upgrade", "--config", str(new)).returncode == 0
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "spool",
        "migrate",
        "--from",
        str(old),
        "--to",
        str(new),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(60):
            while await asyncio.to_thread(_count, pg_dsn) < 40:
                await asyncio.sleep(0.02)
    finally:
        process.kill()  # SIGKILL in the middle
        await process.wait()
    partly = await asyncio.to_thread(_count, pg_dsn)
    assert 40 <= partly < 300
    again = await asyncio.to_thread(migrate, old, new)
    assert again.returncode == 0, again.stderr
    listed = json.loads(command("queue", "--config", str(new), "list", "--json").stdout)
    assert sorted(item["queue_id"] for item in listed) == sorted(stored)
    assert json.loads(command("queue", "--config", str(old), "list", "--json").stdout) == []


def _count(dsn: str) -> int:
    with psycopg.connect(dsn) as connection:
        try:
            row = connection.execute(
                "SELECT count(*) FROM sgg_messages WHERE state <> 'receiving'"
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            return 0
    return int(row[0]) if row else 0


async def test_a_message_half_written_by_a_killed_run_is_written_again(
    tmp_path: Path, pg_dsn: str
) -> None:
    """A run killed while it wrote a large message leaves the message's first rows, still
    `receiving`. Run again, the migration took that for "there already" and deleted the
    message from the old queue: it was in neither. Now it is written again from the start."""
    old, new = configs(tmp_path, pg_dsn)
    spool = Spool(tmp_path / "spool")
    spool.open()
    body = MESSAGE + b"A" * (3 * 1024 * 1024) + b"\r\n"
    queue_id = spool.store(arrival(client="printers", peer="192.0.2.7"), body)
    spool.close()
    assert command("db", "upgrade", "--config", str(new)).returncode == 0
    with psycopg.connect(pg_dsn, autocommit=True) as connection:  # what the killed run left
        connection.execute(
            "INSERT INTO sgg_messages (queue_id, state, leased_by)"
            " VALUES (%s, 'receiving', 'migrator/gone')",
            (queue_id,),
        )
        connection.execute(
            "INSERT INTO sgg_chunks (queue_id, seq, data) VALUES (%s, 0, %s)",
            (queue_id, body[: 1024 * 1024]),
        )
    again = await asyncio.to_thread(migrate, old, new)
    assert again.returncode == 0, again.stderr
    moved = shown(new)
    assert list(moved) == [queue_id] and moved[queue_id]["state"] in ("queue", "queued")
    assert moved[queue_id]["envelope"]["size"] == len(body)
    assert json.loads(command("queue", "--config", str(old), "list", "--json").stdout) == []
