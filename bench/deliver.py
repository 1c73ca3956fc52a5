"""Delivery throughput: how fast the gateway drains a queue it finds at start-up.

Writes N messages of 4 KiB from 20 sender mailboxes into a spool (through `Spool.store`, as
the SMTP listener would), starts the gateway on it with the emulator answering every Graph
request after 50 ms, and waits until the emulator has them all. No SMTP load runs, so this is
the delivery path alone: the backlog after an outage, or a burst bigger than Graph takes at
once. Prints the delivered rate (first to last delivery, as the emulator stamped them), the
CPU per message in the gateway and in the emulator, and the most requests one mailbox had in
flight (at most 4 allowed). Run `--runs 3` and read the medians: this machine's speed drifts.

Run: .venv/bin/python bench/deliver.py [--messages 5000] [--runs 3] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from accept import bench_arguments, cpu_seconds, own_cpu_seconds, running_gateway
from loadgen import body

from gateway.emulator import EmulatorSettings, Faults, running_emulator
from gateway.observability.logging import configure_logging
from gateway.spool import Spool

SENDERS = [f"sender{n:02d}@bench.example" for n in range(20)]


def fill(directory: Path, messages: int, size: int) -> None:
    spool = Spool(directory)
    spool.open()
    try:
        for index in range(messages):
            sender = SENDERS[index % len(SENDERS)]
            spool.store(
                mail_from=sender,
                rcpt_tos=("alice@bench.example",),
                message=body(index, sender, size),
                client="bench",
                peer="127.0.0.1",
                listener="bench",
            )
    finally:
        spool.close()


async def run_once(work: Path, aside: Path, arguments: argparse.Namespace) -> dict[str, float]:
    messages = arguments.messages
    await asyncio.to_thread(fill, work / "spool", messages, arguments.size)
    settings = EmulatorSettings(
        state_dir=aside / "emulator", faults=Faults(latency_ms=arguments.graph_latency_ms)
    )
    async with (
        running_emulator(settings) as emulator,
        running_gateway(work, emulator, concurrency=arguments.concurrency, aside=aside) as (
            gateway,
            _port,
        ),
    ):
        deadline = time.monotonic() + 60 + messages / 10
        while not emulator.delivered():
            await asyncio.sleep(0.01)
        # CPU from the first delivery on: start-up (imports, recovery) is not delivery.
        gateway_cpu, emulator_cpu = cpu_seconds(gateway.pid), own_cpu_seconds()
        counted_from = len(emulator.delivered())
        while len(emulator.delivered()) < messages:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"only {len(emulator.delivered())} of {messages} delivered in time"
                )
            await asyncio.sleep(0.05)
        gateway_cpu = cpu_seconds(gateway.pid) - gateway_cpu
        emulator_cpu = own_cpu_seconds() - emulator_cpu
        delivered = emulator.delivered()
        span = (delivered[-1].received_at - delivered[0].received_at).total_seconds()
        counted = messages - counted_from
        return {
            "rate": (messages - 1) / span,
            "gateway_ms": 1000 * gateway_cpu / counted,
            "emulator_ms": 1000 * emulator_cpu / counted,
            "per_mailbox": max(emulator.stats.max_concurrency_by_mailbox.values()),
        }


async def main(arguments: argparse.Namespace) -> None:
    configure_logging("warning", "json")  # the emulator in this process logs every message
    print(
        f"messages: {arguments.messages} x {arguments.size} bytes queued from 20 mailboxes; "
        f"Graph answering in {arguments.graph_latency_ms} ms; gateway delivery.concurrency "
        f"{arguments.concurrency}"
    )
    runs = []
    for _ in range(arguments.runs):
        with (
            tempfile.TemporaryDirectory(prefix="sgg-deliver-") as work,
            tempfile.TemporaryDirectory(dir=arguments.aside or work) as aside,
        ):
            result = await run_once(Path(work), Path(aside), arguments)
        runs.append(result)
        print(
            f"delivered {result['rate']:6.1f} msg/s; CPU per message: gateway "
            f"{result['gateway_ms']:.2f} ms, emulator {result['emulator_ms']:.2f} ms; "
            f"max {result['per_mailbox']} requests in flight per mailbox"
        )
    if len(runs) > 1:
        print(
            f"median of {len(runs)} runs: delivered "
            f"{statistics.median(r['rate'] for r in runs):.1f} msg/s; gateway "
            f"{statistics.median(r['gateway_ms'] for r in runs):.2f} ms CPU per message"
        )


if __name__ == "__main__":
    asyncio.run(main(bench_arguments(__doc__, messages=5000).parse_args()))
