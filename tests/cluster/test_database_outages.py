"""The database goes away: at start, while serving, in a restart under load, and in a failover
to a synchronous standby. No `250` without a COMMIT, 4xx while it is away, and the gateways come
back by themselves; every acknowledged message is delivered.

Each test runs its own PostgreSQL server (tests/support/postgres.py): they crash it.
"""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from gateway.config import PostgresSettings
from gateway.config.secrets import Secret
from gateway.emulator import Emulator, Faults
from gateway.errors import SpoolError
from gateway.pgqueue.queue import PgQueue
from tests.support.cluster import (
    ClusterLoad,
    Node,
    explain_missing,
    make_node,
    wait_all_delivered,
)
from tests.support.gateway import arrival
from tests.support.load import load_message
from tests.support.postgres import Server


@pytest.fixture
def server() -> Iterator[Server]:
    made = Server().init()
    try:
        yield made
    finally:
        made.destroy()


@pytest.fixture
async def cleanup() -> AsyncIterator[list[Node]]:
    started: list[Node] = []
    try:
        yield started
    finally:
        for node in started:
            await node.cleanup()


async def readyz(node: Node) -> tuple[int, str]:
    url = f"http://127.0.0.1:{node.http_port}/readyz"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


def send_one(port: int, message_id: str) -> tuple[int, bytes]:
    """One session: the greeting's code if it refuses, else DATA's reply."""
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=15) as client:
            client.ehlo()
            client.mail("scanner@contoso.com")
            client.rcpt("alice@contoso.com")
            return client.data(load_message(message_id))
    except smtplib.SMTPConnectError as error:
        return error.smtp_code, error.smtp_error


async def test_a_database_away_at_start_and_while_serving(
    tmp_path: Path, emulator: Emulator, server: Server, cleanup: list[Node]
) -> None:
    node = make_node(tmp_path, emulator, server.dsn(), "node-a")
    cleanup.append(node)
    # At start the server is not up: a clear line and a retry loop, not a crash; /readyz 503.
    await node.start(wait="queue_waiting")
    status, body = await readyz(node)
    assert status == 503 and '"queue"' in body and "cannot" in body
    server.start()
    assert node.process is not None
    await node.process.wait_for_event("listening", timeout=60)
    code, _text = await asyncio.to_thread(send_one, node.port, "first@load.test")
    assert code == 250
    await emulator.wait_delivered(1, 30)

    # While serving: it stops. New connections get 421 4.3.2, /readyz names the queue.
    server.stop("immediate")
    await node.process.wait_for_event("queue_unreachable", timeout=30)
    code, text = await asyncio.to_thread(send_one, node.port, "refused@load.test")
    assert (code, text[:5]) == (421, b"4.3.2")
    status, body = await readyz(node)
    assert status == 503 and '"queue": "the queue' in body
    # It comes back: the gateway finds it by itself, no restart.
    server.start()
    await node.process.wait_for_event("queue_reachable", timeout=30)
    code, _text = await asyncio.to_thread(send_one, node.port, "second@load.test")
    assert code == 250
    await emulator.wait_delivered(2, 30)
    assert (await readyz(node))[0] == 200
    assert await node.stop() == 0


async def test_database_restarted_under_load_loses_nothing(
    tmp_path: Path, emulator: Emulator, server: Server, cleanup: list[Node]
) -> None:
    emulator.set_faults(Faults(latency_ms=20))
    server.start()
    nodes = [make_node(tmp_path, emulator, server.dsn(), name) for name in ("node-a", "node-b")]
    cleanup.extend(nodes)
    for node in nodes:
        await node.start()
    load = ClusterLoad([node.port for node in nodes], "restart", senders=6, per_sender=40).start()
    await load.until(60)
    # A crash restart (pg_ctl -m immediate), with the server down long enough for clients
    # to notice: the commits in flight fail and their clients hear 4xx, never 250.
    await asyncio.to_thread(server.stop, "immediate")
    await asyncio.sleep(2)
    await asyncio.to_thread(server.start)
    await load.finish(timeout=120)
    assert len(load.acknowledged) == 240
    temporary = {code for code in load.refused if code.startswith("4")}
    assert temporary, load.refused  # clients were told to come back (421 / 451)
    counts = await wait_all_delivered(emulator, set(load.acknowledged), timeout=90)
    missing = set(load.acknowledged) - set(counts)
    assert not missing, f"{len(missing)} acknowledged messages lost\n" + explain_missing(
        server.dsn(), missing, nodes
    )
    for node in nodes:
        assert node.events("queue_unreachable") and node.events("queue_reachable")
        assert await node.stop() == 0


async def test_failover_to_a_synchronous_standby_loses_nothing(
    tmp_path: Path, emulator: Emulator, cleanup: list[Node]
) -> None:
    primary = Server().init(synchronous_standby_names="'standby1'", synchronous_commit="on")
    standby = Server()
    try:
        primary.start()
        # Promoted, the standby must not wait for a standby of its own.
        standby.standby_of(primary, "standby1")
        with (standby.data / "postgresql.conf").open("a") as handle:
            handle.write("synchronous_standby_names = ''\n")
        standby.start()
        await _until_streaming(primary)
        dsn = (
            f"host=127.0.0.1,127.0.0.1 port={primary.port},{standby.port} dbname=postgres "
            "user=postgres target_session_attrs=read-write"
        )
        nodes = [make_node(tmp_path, emulator, dsn, name) for name in ("node-a", "node-b")]
        cleanup.extend(nodes)
        # `check` says what 250 means here: committed on two servers.
        checked = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "gateway", "check", "--config", str(nodes[0].config)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert "synchronous standby" in checked.stdout
        [line] = [x for x in checked.stdout.splitlines() if "synchronous standby" in x]
        assert " ok " in line and "standby1 (sync)" in line and "two servers" in line

        emulator.set_faults(Faults(latency_ms=20))
        for node in nodes:
            await node.start()
        load = ClusterLoad([n.port for n in nodes], "failover", senders=6, per_sender=40)
        load.start()
        await load.until(60)
        await asyncio.to_thread(primary.stop, "immediate")  # the primary dies
        await asyncio.sleep(1)
        await asyncio.to_thread(standby.promote)  # the standby takes over
        await load.finish(timeout=120)
        counts = await wait_all_delivered(emulator, set(load.acknowledged), timeout=90)
        missing = set(load.acknowledged) - set(counts)
        assert not missing, (
            f"{len(missing)} acknowledged messages lost in the failover\n"
            + explain_missing(dsn, missing, nodes)
        )
        assert len(load.acknowledged) == 240
        for node in nodes:
            assert await node.stop() == 0
    finally:
        standby.destroy()
        primary.destroy()


async def _until_streaming(primary: Server, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while True:
            state = await asyncio.to_thread(
                primary.sql, "SELECT sync_state FROM pg_stat_replication"
            )
            if state == "sync":
                return
            await asyncio.sleep(0.2)


async def test_a_claim_the_database_broke_goes_back_to_the_queue(
    tmp_path: Path, server: Server
) -> None:
    """A node claimed a message and the database went away before it could read it: once the
    database is back the message is queued again for any node (within its lease), instead of
    staying leased for ever to the node whose delivery never started."""
    server.start()
    settings = PostgresSettings(
        dsn=Secret(server.dsn()), lease=3.0, upgrade_schema=True, node="node-a"
    )
    queue = PgQueue(settings, directory=tmp_path / "work")
    await queue.open()
    try:
        queue_id = await queue.store(
            arrival(),
            load_message("interrupted@load.test"),
        )
        claim = await queue.cluster.claim(2**40, 2**40, 4, 0)
        assert claim is not None and claim.queue_id == queue_id
        await asyncio.to_thread(server.stop, "immediate")
        with pytest.raises(SpoolError):
            await queue.lease(queue_id)
        await asyncio.to_thread(server.start)
        state = None
        async with asyncio.timeout(30):
            while state != "queue":
                await asyncio.sleep(0.5)
                with contextlib.suppress(SpoolError):
                    state = await queue.state_of(queue_id)
        again = await queue.cluster.claim(2**40, 2**40, 4, 0)
        assert again is not None and again.queue_id == queue_id  # due now, for any node
        message = await queue.lease(queue_id)
        assert message is not None and b"interrupted@load.test" in bytes(message.message)
    finally:
        await queue.close()


async def test_a_node_the_others_removed_comes_back_with_its_heartbeat(
    tmp_path: Path, pg_dsn: str
) -> None:
    """A node cut off from the database for ten leases is removed from the cluster by the
    others. When it is back, its heartbeat registers it again — or `spool migrate` would move
    the queue from under a running gateway, thinking none is left."""
    settings = PostgresSettings(dsn=Secret(pg_dsn), lease=1.5, upgrade_schema=True, node="node-a")
    queue = PgQueue(settings, directory=tmp_path / "work")
    await queue.open()
    try:
        [node] = await queue.live_nodes()
        assert node.startswith("node-a/")
        async with queue.db.connection() as connection:
            await connection.execute("DELETE FROM sgg_nodes")  # as the others would
        assert await queue.live_nodes() == []
        async with asyncio.timeout(10):
            while await queue.live_nodes() != [node]:
                await asyncio.sleep(0.1)
    finally:
        await queue.close()
