"""kill -9 in the middle of a load: every message answered 250 is delivered at least once."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path

from gateway.emulator import Emulator, Faults
from tests.support.gateway import config_document, write_config
from tests.support.load import Load
from tests.support.process import GatewayProcess

ROUNDS = 3


def delivered_ids(emulator: Emulator) -> Counter[str]:
    found: Counter[str] = Counter()
    for message in emulator.delivered():
        header = message.mime.split(b"Message-ID: <", 1)[1].split(b">", 1)[0]
        found[header.decode()] += 1
    return found


async def test_kill_9_during_load_loses_no_acknowledged_message(
    tmp_path: Path, emulator: Emulator
) -> None:
    emulator.set_faults(Faults(latency_ms=30))
    document = config_document(
        tmp_path, emulator,
        delivery={"retry_initial": "1s", "retry_max": "2s", "concurrency": 8, "mailbox_rate": 0},
    )
    config = write_config(tmp_path, document)
    rng = random.Random(20261122)
    acknowledged: list[str] = []
    for round_number in range(ROUNDS):
        gateway = await GatewayProcess.start(config)
        try:
            port = (await gateway.wait_for_event("listening"))["port"]
            load = Load(port=port, prefix=f"r{round_number}", senders=8, per_sender=60)
            threads = load.start()
            target = rng.randint(60, 160)
            async with asyncio.timeout(60):
                while len(load.acknowledged) < target and any(t.is_alive() for t in threads):
                    await asyncio.sleep(0.01)
            gateway.process.kill()  # SIGKILL: no drain, no cleanup
            await gateway.wait_exit()
            load.stop.set()
            for thread in threads:
                await asyncio.to_thread(thread.join, 30)
            acknowledged.extend(load.acknowledged)
        finally:
            gateway.kill()
    assert len(acknowledged) >= ROUNDS * 60

    final = await GatewayProcess.start(config)
    try:
        await final.wait_for_event("listening")
        async with asyncio.timeout(120):
            while not set(acknowledged) <= set(delivered_ids(emulator)):
                await asyncio.sleep(0.1)
    finally:
        final.kill()
        await final.wait_exit()
    counts = delivered_ids(emulator)
    missing = set(acknowledged) - set(counts)
    duplicates = sum(count - 1 for count in counts.values() if count > 1)
    assert not missing, f"{len(missing)} acknowledged messages lost"
    # At-least-once: a kill can repeat only what was in flight (≤ workers per kill).
    assert duplicates <= ROUNDS * 8, duplicates
