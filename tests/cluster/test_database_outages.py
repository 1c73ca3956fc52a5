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
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from gateway.config import PostgresSettings, load_config
from gateway.config.secrets import Secret
from gateway.emulator import Emulator, Faults
from gateway.errors import QueueRefused, SpoolError
from gateway.graph import transport as submit_module
from gateway.pgqueue.queue import PgQueue
from tests.conftest import Logged
from tests.e2e.test_pipeline import MESSAGE
from tests.support.cluster import (
    ClusterLoad,
    Node,
    explain_missing,
    make_node,
    wait_all_delivered,
)
from tests.support.gateway import arrival, config_document, run_gateway, write_config
from tests.support.load import load_message
from tests.support.postgres import Server, cluster_spool


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


async def test_a_bug_while_the_database_is_away_leaves_the_worker_alive(
    tmp_path: Path,
    emulator: Emulator,
    server: Server,
    monkeypatch: pytest.MonkeyPatch,
    logged: Logged,
) -> None:
    """A delivery that failed with a bug while the database was away could neither hold its
    message nor put it back; the queue's error escaped and killed the worker — the node went
    on answering 250 and delivered nothing more. Now the worker lives on: once the database is
    back the message's lapsed lease brings it back, it is held with the reason, and the mail
    after it is delivered by the same (only) worker."""
    server.start()
    real_convert = submit_module.convert
    stopped = threading.Event()

    def convert(data: bytes, *args: Any, **kwargs: Any) -> Any:
        if b"poison" in data:
            if not stopped.is_set():
                server.stop("immediate")  # the database goes away as the bug strikes
                stopped.set()
            raise RuntimeError("bug in the converter")
        return real_convert(data, *args, **kwargs)

    monkeypatch.setattr(submit_module, "convert", convert)
    document = config_document(
        tmp_path,
        emulator,
        spool=cluster_spool(tmp_path, server.dsn(), lease="5s"),
        delivery={"concurrency": 1, "retry_initial": "1s", "retry_max": "2s"},
    )
    document["tenants"][0]["mode"] = "json"
    config = load_config(write_config(tmp_path, document))
    async with run_gateway(config) as gateway:
        poison = MESSAGE.replace(b"Subject: Scan", b"Subject: poison")
        assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], poison) == {}
        async with asyncio.timeout(30):
            while not stopped.is_set():
                await asyncio.sleep(0.1)
        async with asyncio.timeout(90):  # the hold fails, then the put-back too
            while not logged("requeue_failed"):
                await asyncio.sleep(0.5)
        assert logged("hold_failed")
        await asyncio.to_thread(server.start)
        held = await gateway.next_event(timeout=60)
        assert held.result == "held" and "RuntimeError" in held.reason
        assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE) == {}
        delivered = await gateway.next_event(timeout=30)
        assert delivered.result == "delivered"
    assert len(emulator.delivered()) == 1


async def test_a_delivery_the_database_missed_is_not_sent_again(
    tmp_path: Path, emulator: Emulator, server: Server, logged: Logged
) -> None:
    """Graph took the message while the database was away, so its row could not be removed.
    The node used to give its lease up then, and once the database was back the message was
    taken over and delivered a second time. Now the node keeps the lease and removes the row
    when the database answers: one delivery."""
    server.start()
    emulator.set_faults(Faults(latency_ms=6000))  # the request is under way for 6 s
    document = config_document(
        tmp_path,
        emulator,
        spool=cluster_spool(tmp_path, server.dsn()),
        delivery={"concurrency": 1, "retry_initial": "1s", "retry_max": "2s"},
    )
    config = load_config(write_config(tmp_path, document))
    async with run_gateway(config) as gateway:
        assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE) == {}
        async with asyncio.timeout(30):  # claimed, read, sent: Graph is answering
            while not emulator.stats.in_flight("scanner@contoso.com"):
                await asyncio.sleep(0.05)
        await asyncio.to_thread(server.stop, "immediate")
        await asyncio.sleep(14)  # longer than a connection is waited for, and than the lease
        await asyncio.to_thread(server.start)
        delivered = await gateway.next_event(timeout=30)
        assert delivered.result == "delivered"
        queue = gateway.gateway.queue
        async with asyncio.timeout(30):
            while await queue.entries():
                await asyncio.sleep(0.2)
        await asyncio.sleep(8)  # a lease given up would be taken over by now
    assert len(emulator.delivered()) == 1
    assert logged("delivered_not_recorded")


async def test_after_an_outage_a_node_does_not_take_the_leases_of_nodes_still_delivering(
    tmp_path: Path, server: Server
) -> None:
    """The database was away for longer than a lease: every lease ran out, also those of
    messages another node was still delivering. The first node back used to take them all
    (each was delivered twice). Now a node that has just found the database again takes only
    its own for one lease; the others renew theirs meanwhile."""
    server.start()
    queues = [
        PgQueue(
            PostgresSettings(dsn=Secret(server.dsn()), lease=5.0, upgrade_schema=True, node=name),
            directory=tmp_path / name,
        )
        for name in ("node-a", "node-b")
    ]
    delivering, watching = queues
    for queue in queues:
        await queue.open()
    try:
        queue_id = await delivering.store(arrival(), load_message("in-flight@load.test"))
        claim = await delivering.cluster.claim(2**40, 2**40, 4, 0)
        assert claim is not None and claim.queue_id == queue_id  # node-a delivers it now
        await asyncio.to_thread(server.stop, "immediate")
        await asyncio.sleep(7)  # longer than the lease: it ran out
        await asyncio.to_thread(server.start)
        taken: list[str] = []
        async with asyncio.timeout(30):
            while True:  # node-b's first look once the database answers
                with contextlib.suppress(SpoolError):
                    taken = await watching.reclaim()
                    break
                await asyncio.sleep(0.2)
        assert taken == []
        async with asyncio.timeout(60):  # node-a renews its lease (its own pool untouched)
            while await asyncio.to_thread(lease_of, server.dsn(), queue_id) != (
                delivering.node,
                True,
            ):
                await asyncio.sleep(0.2)
        await asyncio.sleep(6)
        assert await watching.reclaim() == []  # node-a's lease is live: not taken
        assert await delivering.state_of(queue_id) == "active"
    finally:
        for queue in queues:
            await queue.close()


def lease_of(dsn: str, queue_id: str) -> tuple[str, bool] | None:
    """Who holds `queue_id`'s lease, and whether it is live (on a connection of its own)."""
    with psycopg.connect(dsn) as connection:
        row = connection.execute(
            "SELECT leased_by, lease_until > now() FROM sgg_messages WHERE queue_id = %s",
            (queue_id,),
        ).fetchone()
    return None if row is None else (str(row[0]), bool(row[1]))


async def test_a_delivery_cut_short_by_the_drain_is_removed_at_stop_not_given_back(
    tmp_path: Path, server: Server
) -> None:
    """Graph took the message, the database was away, and the gateway was stopped while the
    removal was still being retried (the drain cancels it). When the node leaves the cluster
    with the database back, that message is removed — given back with the others, it would be
    delivered again by another node."""
    server.start()
    settings = PostgresSettings(dsn=Secret(server.dsn()), upgrade_schema=True, node="node-a")
    queue = PgQueue(settings, directory=tmp_path / "work")
    await queue.open()
    delivered_id = await queue.store(arrival(), load_message("delivered@load.test"))
    claim = await queue.cluster.claim(2**40, 2**40, 4, 0)
    assert claim is not None and claim.queue_id == delivered_id
    assert await queue.lease(delivered_id) is not None
    await asyncio.to_thread(server.stop, "immediate")
    removal = asyncio.create_task(queue.complete(delivered_id))  # Graph answered 202
    await asyncio.sleep(2)
    assert not removal.done()  # retrying while the database is away
    removal.cancel()  # the drain ran out of time
    with contextlib.suppress(asyncio.CancelledError):
        await removal
    await asyncio.to_thread(server.start)
    await queue.close()  # leaves the cluster: gives back what it did not deliver
    assert await asyncio.to_thread(lease_of, server.dsn(), delivered_id) is None


async def test_a_statement_that_lost_a_race_is_not_a_database_outage(
    tmp_path: Path, pg_dsn: str
) -> None:
    """A statement time-out (or a deadlock, a lock time-out) arrives as psycopg's
    OperationalError, like a lost connection. It fails that step only: the node does not
    count the database as away (which would refuse new mail with 421 and start its reclaim
    patience over)."""
    settings = PostgresSettings(dsn=Secret(pg_dsn), upgrade_schema=True, node="node-a")
    queue = PgQueue(settings, directory=tmp_path / "work")
    await queue.open()
    try:
        async with queue.db.connection() as connection:
            await connection.execute("SELECT 1")
        assert queue.db.reachable
        with pytest.raises(QueueRefused, match="statement timeout"):
            async with queue.db.connection() as connection:
                await connection.execute("SET statement_timeout = '10ms'")
                try:
                    await connection.execute("SELECT pg_sleep(1)")
                finally:
                    await connection.execute("RESET statement_timeout")
        assert queue.db.reachable and queue.db.problem == ""
    finally:
        await queue.close()
