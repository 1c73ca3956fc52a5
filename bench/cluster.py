"""Cluster mode, side by side: the file spool and the PostgreSQL queue accepting the same load,
PostgreSQL's own commit rate as the floor, and how long a killed node's mail waits.

1. accept: the gateway with `spool.backend: files`, then with `spool.backend: postgresql`,
   each loaded by bench/loadgen.py (20 sessions, 4 KiB, one connection per message) while the
   emulator holds every Graph request, so only the accept path runs (as `accept.py
   --accept-only`). Rate, DATA→250 latency and the gateway's CPU per message.
2. floor: 20 connections inserting one 4 KiB row per transaction into the same server, from
   this machine, for `--floor-seconds`: the most commits a second the server gives a client
   that waits for each one, whatever the client.
3. pickup: node A and node B idle, Graph answering at once; `--pickup-messages` sent one at a
   time, in turn to each node: the time from `250` until the emulator has the message (a
   free worker on any node is woken by LISTEN/NOTIFY; the issue asks for under 100 ms).
4. takeover: node A and node B on one database; A accepts `--takeover-messages` while Graph
   holds every request, so A holds their leases; `kill -9` A and let Graph answer again; the
   time until B has delivered them all, against the lease (`--lease`, the default 30 s).

Targets (issue #16): PostgreSQL accept rate ≥ 0.7x the file spool's and ≥ 0.8x the floor;
takeover ≤ lease + 5 s; CPU per message ≤ 1.5x the file spool's.

The database is a new one on `--dsn`'s server (created and dropped here): the system
PostgreSQL on 127.0.0.1 by default, with its own settings (synchronous_commit, fsync) — say
which in a report. Everything shares this machine's two cores.

Run: .venv/bin/python bench/cluster.py [--messages 2000] [--dsn postgresql://127.0.0.1/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import smtplib
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from accept import (  # noqa: E402 - bench/ is on sys.path now
    cpu_seconds,
    free_port,
    gateway_config,
    load,
    running_gateway,
    wait_ready,
)

from gateway.emulator import EmulatorSettings, Faults, running_emulator  # noqa: E402 - after sys.path
from gateway.observability.logging import configure_logging  # noqa: E402 - after sys.path
from tests.support.cluster import Node  # noqa: E402 - after sys.path

HOLD_MS = 600_000  # Graph answers after ten minutes: nothing is delivered while we measure


@contextlib.asynccontextmanager
async def scratch_database(server: str) -> AsyncIterator[str]:
    """A new database on `server` (a libpq URL), dropped afterwards; yields its DSN."""
    name = f"sgg_bench_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(server, autocommit=True) as admin:
        await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = psycopg.conninfo.make_conninfo(server, dbname=name)
    try:
        yield dsn
    finally:
        async with await psycopg.AsyncConnection.connect(server, autocommit=True) as admin:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_spool(work: Path, dsn: str, node: str, lease: float) -> dict[str, Any]:
    return {
        "backend": "postgresql",
        "directory": str(work / "spool"),
        "postgresql": {"dsn": dsn, "upgrade_schema": True, "node": node, "lease": f"{lease}s"},
    }


async def accept_run(
    work: Path, emulator: Any, messages: int, spool: dict[str, Any] | None
) -> dict[str, Any]:
    """One gateway (file spool, or `spool`), loaded until `messages` are accepted."""
    work.mkdir(parents=True)
    running = running_gateway(work, emulator, concurrency=32, aside=work, spool=spool)
    async with running as (gateway, port):
        await wait_ready(port)
        before = cpu_seconds(gateway.pid)
        result: dict[str, Any] = await load(port, messages, 4096)
        result["cpu_ms_per_msg"] = (
            (cpu_seconds(gateway.pid) - before) * 1000 / max(result["accepted"], 1)
        )
        return result


async def commit_floor(dsn: str, seconds: float, connections: int = 20) -> float:
    """Commits a second: `connections` clients each inserting one 4 KiB row per transaction."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as setup:
        await setup.execute("CREATE TABLE bench_floor (id bigserial PRIMARY KEY, body bytea)")
    body = os.urandom(4096)
    done = 0
    deadline = time.monotonic() + seconds

    async def client() -> None:
        nonlocal done
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
            while time.monotonic() < deadline:
                await connection.execute("INSERT INTO bench_floor (body) VALUES (%s)", (body,))
                done += 1

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(connections)))
    return done / (time.monotonic() - started)


def node_at(work: Path, emulator: Any, dsn: str, name: str, lease: float) -> Node:
    home = work / name
    home.mkdir(parents=True)
    port, http_port = free_port(), free_port()
    config = gateway_config(emulator, port, home / "spool", concurrency=32)
    config["spool"] = postgres_spool(home, dsn, name, lease)
    config["http"] = {"listen": f"127.0.0.1:{http_port}"}
    config["delivery"].update(retry_initial="1s", retry_max="2s")
    (home / "gateway.yaml").write_text(yaml.safe_dump(config))
    return Node(name, home / "gateway.yaml", port, http_port)


async def transactions(dsn: str) -> int:
    """Transactions committed in this database so far (the statistics lag by up to 0.5 s)."""
    await asyncio.sleep(1)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
        cursor = await connection.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        row = await cursor.fetchone()
        return int(row[0]) if row else 0


async def leased_by(dsn: str, node: str) -> int:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
        cursor = await connection.execute(
            "SELECT count(*) FROM sgg_messages WHERE leased_by LIKE %s", (f"{node}/%",)
        )
        row = await cursor.fetchone()
        return int(row[0]) if row else 0


async def pickup(work: Path, dsn: str, messages: int, lease: float) -> list[float]:
    """Seconds from `250` to delivered, for messages sent one by one to alternate nodes."""
    settings = EmulatorSettings(state_dir=work / "emulator")
    async with running_emulator(settings) as emulator:
        nodes = [node_at(work, emulator, dsn, name, lease) for name in ("node-a", "node-b")]
        try:
            for node in nodes:
                await node.start()
            found = []
            for index in range(messages):
                port = nodes[index % 2].port
                before = len(emulator.delivered())
                await asyncio.to_thread(send_one, port, index)
                acknowledged = time.monotonic()
                while len(emulator.delivered()) == before:
                    await asyncio.sleep(0.001)
                found.append(time.monotonic() - acknowledged)
            for node in nodes:
                await node.stop()
            return found
        finally:
            for node in nodes:
                await node.cleanup()


def send_one(port: int, index: int) -> None:
    message = (
        f"From: <sender{index % 20}@bench.example>\r\nTo: <alice@bench.example>\r\n"
        f"Subject: pickup {index}\r\nMessage-ID: <pickup-{index}@bench.example>\r\n\r\n"
        + "x" * 4000
        + "\r\n"
    )
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail(f"sender{index % 20}@bench.example", ["alice@bench.example"], message)


async def takeover(work: Path, dsn: str, messages: int, lease: float) -> dict[str, float]:
    """Seconds from `kill -9` of the node holding `messages` leases until another node has
    delivered them all."""
    settings = EmulatorSettings(state_dir=work / "emulator", faults=Faults(latency_ms=HOLD_MS))
    async with running_emulator(settings) as emulator:
        a = node_at(work, emulator, dsn, "node-a", lease)
        b = node_at(work, emulator, dsn, "node-b", lease)
        try:
            await a.start()
            result = await load(a.port, messages, 4096)
            deadline = time.monotonic() + 60
            while await leased_by(dsn, "node-a") < result["accepted"]:
                if time.monotonic() > deadline:
                    raise RuntimeError("node-a did not lease every message it accepted")
                await asyncio.sleep(0.1)
            await b.start()
            await a.kill()
            killed = time.monotonic()
            emulator.set_faults(Faults())  # Graph answers again, at once
            while len(emulator.delivered()) < result["accepted"]:
                if time.monotonic() - killed > lease + 120:
                    raise RuntimeError("node-b did not deliver node-a's messages")
                await asyncio.sleep(0.05)
            taken = time.monotonic() - killed
            await b.stop()
            return {"messages": result["accepted"], "seconds": taken}
        finally:
            await a.cleanup()
            await b.cleanup()


async def main(arguments: argparse.Namespace) -> int:
    configure_logging(level="warning", fmt="json")
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as folder:
        work = Path(folder)
        async with scratch_database(arguments.dsn) as dsn:
            async with await psycopg.AsyncConnection.connect(dsn) as probe:
                row = await (await probe.execute("SHOW synchronous_commit")).fetchone()
                sync_commit = row[0] if row else "?"
            settings = EmulatorSettings(
                state_dir=work / "emulator-accept", faults=Faults(latency_ms=HOLD_MS)
            )
            async with running_emulator(settings) as emulator:
                files = await accept_run(work / "files", emulator, arguments.messages, None)
                commits = await transactions(dsn)
                pg = await accept_run(
                    work / "pg",
                    emulator,
                    arguments.messages,
                    postgres_spool(work / "pg", dsn, "bench", arguments.lease),
                )
                # what the accept load cost the database (heartbeats and sweeps included)
                pg["commits_per_msg"] = (await transactions(dsn) - commits) / pg["accepted"]
            floor = await commit_floor(dsn, arguments.floor_seconds)
        async with scratch_database(arguments.dsn) as dsn:
            picked = sorted(
                await pickup(work / "pickup", dsn, arguments.pickup_messages, arguments.lease)
            )
        async with scratch_database(arguments.dsn) as dsn:
            moved = await takeover(
                work / "takeover", dsn, arguments.takeover_messages, arguments.lease
            )
    for name, run in (("files", files), ("postgresql", pg)):
        print(
            f"accept {name:10}: {run['rate']:7.1f} msg/s, DATA->250 p50 {run['p50_ms']} ms, "
            f"p99 {run['p99_ms']} ms, failures {run['failures']}, gateway CPU "
            f"{run['cpu_ms_per_msg']:.2f} ms/msg"
        )
    print(
        f"database         : {pg['commits_per_msg']:.1f} transactions per accepted message "
        "(xact_commit: reads included)"
    )
    print(
        f"floor            : {floor:7.1f} commits/s (20 clients, one 4 KiB row each; "
        f"synchronous_commit={sync_commit})"
    )
    print(
        f"pickup           : 250 -> delivered p50 {picked[len(picked) // 2] * 1000:.0f} ms, "
        f"p99 {picked[int(len(picked) * 0.99)] * 1000:.0f} ms, max {picked[-1] * 1000:.0f} ms "
        f"({len(picked)} messages, one at a time, alternating nodes)"
    )
    print(
        f"takeover         : {moved['messages']} messages delivered by node-b "
        f"{moved['seconds']:.1f} s after kill -9 of node-a (lease {arguments.lease:g} s)"
    )
    checks = {
        "accept >= 0.7x files": pg["rate"] >= 0.7 * files["rate"],
        "accept >= 0.8x floor": pg["rate"] >= 0.8 * floor,
        "takeover <= lease + 5 s": moved["seconds"] <= arguments.lease + 5,
        "pickup p50 < 100 ms": picked[len(picked) // 2] < 0.1,
        "CPU <= 1.5x files": pg["cpu_ms_per_msg"] <= 1.5 * files["cpu_ms_per_msg"],
    }
    print(
        f"ratios           : accept {pg['rate'] / files['rate']:.2f}x files, "
        f"{pg['rate'] / floor:.2f}x floor; "
        f"CPU {pg['cpu_ms_per_msg'] / files['cpu_ms_per_msg']:.2f}x files"
    )
    for name, met in checks.items():
        print(f"target           : {name}: {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--dsn", default="postgresql://127.0.0.1/postgres")
    parser.add_argument("--floor-seconds", type=float, default=15.0)
    parser.add_argument("--takeover-messages", type=int, default=20)
    parser.add_argument("--pickup-messages", type=int, default=100)
    parser.add_argument("--lease", type=float, default=30.0)
    sys.exit(asyncio.run(main(parser.parse_args())))
