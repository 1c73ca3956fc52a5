"""Kill the daemon in the middle of a load, and check what the emulator got afterwards.

Shared by the crash test (a few rounds) and `bench/kill_stress.py` (many rounds).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from tests.support.load import Load
from tests.support.process import GatewayProcess


def delivered_ids(emulator: Any) -> Counter[str]:
    """How often each Message-ID reached the emulator."""
    found: Counter[str] = Counter()
    for message in emulator.delivered():
        found[message.mime.split(b"Message-ID: <", 1)[1].split(b">", 1)[0].decode()] += 1
    return found


async def kill_during_load(
    config: Path, *, prefix: str, senders: int, per_sender: int, target: int
) -> list[str]:
    """Start the daemon, load it, SIGKILL it after `target` acknowledgements; the
    Message-IDs that were answered 250."""
    gateway = await GatewayProcess.start(config)
    try:
        port = (await gateway.wait_for_event("listening"))["port"]
        load = Load(port=port, prefix=prefix, senders=senders, per_sender=per_sender)
        threads = load.start()
        async with asyncio.timeout(120):
            while len(load.acknowledged) < target and any(t.is_alive() for t in threads):
                await asyncio.sleep(0.005)
        gateway.process.kill()  # SIGKILL: no drain, no cleanup
        await gateway.wait_exit()
        load.stop.set()
        for thread in threads:
            await asyncio.to_thread(thread.join, 30)
        return list(load.acknowledged)
    finally:
        gateway.kill()


async def deliver_all(
    config: Path, emulator: Any, acknowledged: list[str], timeout: float
) -> Counter[str]:
    """Start the daemon once more and wait until every acknowledged message has arrived (or
    `timeout`); the delivery counts."""
    final = await GatewayProcess.start(config)
    try:
        await final.wait_for_event("listening")
        wanted = set(acknowledged)
        async with asyncio.timeout(timeout):
            while not wanted <= set(delivered_ids(emulator)):
                await asyncio.sleep(0.1)
    except TimeoutError:
        pass  # the caller reports what is missing
    finally:
        final.kill()
        await final.wait_exit()
    return delivered_ids(emulator)
