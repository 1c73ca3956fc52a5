"""kill -9 in the middle of a load: every message answered 250 is delivered at least once."""

from __future__ import annotations

import random
from pathlib import Path

from gateway.emulator import Emulator, Faults
from tests.support.crash import deliver_all, kill_during_load
from tests.support.gateway import config_document, write_config

ROUNDS = 3


async def test_kill_9_during_load_loses_no_acknowledged_message(
    tmp_path: Path, emulator: Emulator
) -> None:
    emulator.set_faults(Faults(latency_ms=30))
    document = config_document(
        tmp_path,
        emulator,
        delivery={"retry_initial": "1s", "retry_max": "2s", "concurrency": 8, "mailbox_rate": 0},
    )
    config = write_config(tmp_path, document)
    rng = random.Random(20261122)
    acknowledged: list[str] = []
    for round_number in range(ROUNDS):
        acknowledged += await kill_during_load(
            config, prefix=f"r{round_number}", senders=8, per_sender=60, target=rng.randint(60, 160)
        )
    assert len(acknowledged) >= ROUNDS * 60

    counts = await deliver_all(config, emulator, acknowledged, timeout=120)
    missing = set(acknowledged) - set(counts)
    duplicates = sum(count - 1 for count in counts.values() if count > 1)
    assert not missing, f"{len(missing)} acknowledged messages lost"
    # At-least-once: a kill can repeat only what was in flight (≤ workers per kill).
    assert duplicates <= ROUNDS * 8, duplicates
