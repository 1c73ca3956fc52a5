"""kill -9 stress: load the gateway, SIGKILL it at a random moment, restart, repeat.

Every message answered 250 must reach the emulator at least once; duplicates are counted.
Run: .venv/bin/python bench/kill_stress.py [--rounds 20] [--seed N]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.emulator import EmulatorSettings, Faults, running_emulator  # noqa: E402 - imported after sys.path points at the repository
from gateway.observability.logging import configure_logging  # noqa: E402 - imported after sys.path points at the repository
from tests.support.crash import deliver_all, kill_during_load  # noqa: E402 - imported after sys.path points at the repository
from tests.support.gateway import config_document, write_config  # noqa: E402 - imported after sys.path points at the repository


async def main(rounds: int, seed: int) -> int:
    configure_logging("warning", "json")
    # Every kill cuts the gateway's Graph requests short; the emulator's server would log each.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="sgg-kill-") as folder:
        work = Path(folder)
        settings = EmulatorSettings(state_dir=work / "emulator", faults=Faults(latency_ms=30))
        async with running_emulator(settings) as emulator:
            document = config_document(
                work,
                emulator,
                delivery={
                    "retry_initial": "1s",
                    "retry_max": "2s",
                    "concurrency": 8,
                    "mailbox_rate": 0,
                },
            )
            config = write_config(work, document)
            acknowledged: list[str] = []
            started = time.monotonic()
            for number in range(rounds):
                target = rng.randint(20, 400)
                got = await kill_during_load(
                    config, prefix=f"r{number}", senders=20, per_sender=50, target=target
                )
                acknowledged += got
                print(
                    f"round {number + 1:2d}: killed after {len(got):3d} acknowledged "
                    f"(target {target})",
                    flush=True,
                )
            counts = await deliver_all(config, emulator, acknowledged, timeout=300)
    missing = set(acknowledged) - set(counts)
    duplicates = sum(count - 1 for count in counts.values() if count > 1)
    print(
        f"{rounds} kills in {time.monotonic() - started:.0f} s: {len(acknowledged)} messages "
        f"acknowledged, {len(missing)} lost, {duplicates} duplicates "
        f"({duplicates / rounds:.1f} per kill)"
    )
    return 1 if missing else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    arguments = parser.parse_args()
    raise SystemExit(asyncio.run(main(arguments.rounds, arguments.seed)))
