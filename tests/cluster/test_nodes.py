"""Two gateway processes on one PostgreSQL queue: any node delivers any message, a node killed
with kill -9 loses nothing (another takes its leases over), and the per-mailbox limits hold for
the two together."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from gateway.emulator import Emulator, Faults
from tests.support.cluster import (
    ClusterLoad,
    Node,
    explain_missing,
    running_nodes,
    wait_all_delivered,
)


@pytest.fixture
async def nodes(tmp_path: Path, emulator: Emulator, pg_dsn: str) -> AsyncIterator[list[Node]]:
    """Two nodes with the test settings, started."""
    async with running_nodes(tmp_path, emulator, pg_dsn) as made:
        yield made


async def test_mail_accepted_on_either_node_is_delivered_once(
    emulator: Emulator, nodes: list[Node]
) -> None:
    emulator.set_faults(Faults(latency_ms=20))
    load = ClusterLoad([node.port for node in nodes], "either", senders=4, per_sender=30).start()
    await load.finish()
    assert len(load.acknowledged) == 120 and not load.refused
    counts = await wait_all_delivered(emulator, set(load.acknowledged), timeout=60)
    assert {message_id: counts[message_id] for message_id in load.acknowledged} == dict.fromkeys(
        load.acknowledged, 1
    )
    # Any node delivers any message: each delivered some that the other accepted.
    accepted = {
        node.name: {e["queue_id"] for e in node.events("transaction") if e.get("queue_id")}
        for node in nodes
    }
    delivered = {node.name: {e["queue_id"] for e in node.events("delivered")} for node in nodes}
    assert accepted["node-a"] & delivered["node-b"]
    assert accepted["node-b"] & delivered["node-a"]
    for node in nodes:  # every log line names its node
        assert {e.get("node") for e in node.runs[0].events} == {node.name}
        assert await node.stop() == 0


async def test_kill_9_of_a_node_under_load_loses_nothing(
    emulator: Emulator, nodes: list[Node], pg_dsn: str
) -> None:
    emulator.set_faults(Faults(latency_ms=30))
    load = ClusterLoad([node.port for node in nodes], "kill", senders=6, per_sender=60).start()
    rng = random.Random(20261206)
    rounds = 3
    for round_number in range(rounds):
        await load.until(len(load.acknowledged) + rng.randint(20, 60))
        victim = nodes[round_number % 2]
        await victim.kill()  # its leases are taken over by the other node when they lapse
        await load.until(len(load.acknowledged) + 20)  # the survivor takes the load
        await victim.start()  # a new identity: it does not own the old leases
    await load.finish()
    acknowledged = set(load.acknowledged)
    assert len(acknowledged) == 360
    counts = await wait_all_delivered(emulator, acknowledged, timeout=90)
    missing = acknowledged - set(counts)
    assert not missing, f"{len(missing)} acknowledged messages lost\n" + explain_missing(
        pg_dsn, missing, nodes
    )
    # A node takes another's lapsed leases once it has had the database for its patience (a
    # lease, a pool wait and a beat): the restarted nodes here are younger than that at first.
    async with asyncio.timeout(60):
        while not (survivors := [e for n in nodes for e in n.events("lease_taken_over")]):
            await asyncio.sleep(0.5)
    assert {e["holder"].split("/")[0] for e in survivors} <= {"node-a", "node-b"}
    async with asyncio.timeout(60):  # what was taken over is delivered (again): the queue empties
        while await asyncio.to_thread(rows_left, pg_dsn):
            await asyncio.sleep(0.5)
    counts = await wait_all_delivered(emulator, acknowledged, timeout=10)
    # At least once: a kill repeats only what the killed node had in flight.
    duplicates = sum(count - 1 for count in counts.values() if count > 1)
    assert duplicates <= rounds * 4, duplicates


async def test_two_nodes_never_exceed_four_requests_for_one_mailbox(
    tmp_path: Path, emulator: Emulator, pg_dsn: str
) -> None:
    """Each node alone may run eight deliveries; for one mailbox the two together run four."""
    emulator.set_faults(Faults(latency_ms=300))
    async with running_nodes(tmp_path, emulator, pg_dsn, delivery={"concurrency": 8}) as made:
        load = ClusterLoad([node.port for node in made], "limit", senders=8, per_sender=8)
        await load.start().finish()
        counts = await wait_all_delivered(emulator, set(load.acknowledged), timeout=60)
        assert set(load.acknowledged) <= set(counts)
        assert emulator.stats.max_concurrency_by_mailbox["scanner@contoso.com"] == 4


async def test_a_mailbox_minute_is_shared_across_nodes(
    tmp_path: Path, emulator: Emulator, pg_dsn: str
) -> None:
    """mailbox_rate 4: four requests for the mailbox in any minute, whichever node sends. Six
    messages acknowledged by the two nodes: four go at once, the other two wait for the minute
    (each node counting alone would send all six)."""
    async with running_nodes(tmp_path, emulator, pg_dsn, delivery={"mailbox_rate": 4}) as made:
        load = ClusterLoad([node.port for node in made], "paced", senders=2, per_sender=3)
        await load.start().finish()
        assert len(load.acknowledged) == 6
        await emulator.wait_delivered(4, timeout=30)
        first = min(r.time for r in emulator.stats.requests)
        await asyncio.sleep(5)  # the two left wait until a minute after the first
        sends = [r for r in emulator.stats.requests if r.mailbox == "scanner@contoso.com"]
        assert len(sends) == 4, [(r.time - first, r.status) for r in sends]
        assert max(r.time for r in sends) - first < 30


async def test_retry_after_holds_across_nodes(
    tmp_path: Path, emulator: Emulator, pg_dsn: str
) -> None:
    """A 429 with Retry-After: 2 on one node keeps both away from that mailbox for 2 s (one
    request in flight per mailbox, so the next one starts only after the answer)."""
    emulator.set_faults(Faults(throttle_count=1, throttle_retry_after=2))
    delivery = {"mailbox_rate": 0, "max_per_mailbox": 1}
    async with running_nodes(tmp_path, emulator, pg_dsn, delivery=delivery) as made:
        load = ClusterLoad([node.port for node in made], "throttled", senders=2, per_sender=4)
        await load.start().finish()
        counts = await wait_all_delivered(emulator, set(load.acknowledged), timeout=60)
        assert set(load.acknowledged) <= set(counts)
        sends = sorted(
            (r for r in emulator.stats.requests if r.mailbox == "scanner@contoso.com"),
            key=lambda r: r.time,
        )
        assert [r.status for r in sends].count(429) == 1
        throttled = next(index for index, r in enumerate(sends) if r.status == 429)
        assert sends[throttled + 1].time - sends[throttled].time >= 1.9  # Retry-After: 2


def rows_left(dsn: str) -> int:
    with psycopg.connect(dsn) as connection:
        row = connection.execute("SELECT count(*) FROM sgg_messages").fetchone()
    return int(row[0]) if row else 0
