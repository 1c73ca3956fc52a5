"""Delivery throughput: how fast the gateway drains a queue it finds at start-up.

Writes N messages of 4 KiB from 20 sender mailboxes into a spool (through `Spool.store`, as
the SMTP listener would), starts the gateway on it with the emulator answering every Graph
request after 50 ms, and waits until the emulator has them all. No SMTP load runs, so this is
the delivery path alone: the backlog after an outage, or a burst bigger than Graph takes at
once. Prints the delivered rate (first to last delivery, as the emulator stamped them), the
time from the gateway's start to the last delivery, the CPU per message in the gateway and in
the emulator (from the first delivery on), the gateway's peak RSS and the most requests one
mailbox had in flight (at most 4 allowed). Run `--runs 3` and read the medians:
this machine's speed drifts.

`--attachment-mb N` queues scans instead: each message carries an N MB PDF (base64), and the
tenant takes the large-message path (draft, upload session, send). With `--messages 8
--concurrency 8` this shows what `delivery.max_bytes_in_flight` does to peak memory.

Run: .venv/bin/python bench/deliver.py [--messages 5000] [--runs 3] [--concurrency 32]
     .venv/bin/python bench/deliver.py --attachment-mb 20 --messages 8 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import tempfile
import time
from pathlib import Path

from accept import bench_arguments, cpu_seconds, own_cpu_seconds, peak_rss_mb, running_gateway
from loadgen import body, sender_addresses

from gateway.emulator import EmulatorSettings, Faults, running_emulator
from gateway.observability.logging import configure_logging
from gateway.queue.model import Arrival
from gateway.spool import Spool

SENDERS = sender_addresses(20)


def scan(index: int, sender: str, pdf: bytes) -> bytes:
    """A scanner's message: a line of text and `pdf` (already base64) attached."""
    head = (
        f"From: <{sender}>\r\nTo: <alice@bench.example>\r\nSubject: scan {index}\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nScan attached.\r\n--b\r\n"
        'Content-Type: application/pdf; name="scan.pdf"\r\nContent-Transfer-Encoding: base64\r\n'
        'Content-Disposition: attachment; filename="scan.pdf"\r\n\r\n'
    )
    return head.encode() + pdf + b"--b--\r\n"


def fill(directory: Path, messages: int, size: int, attachment_mb: int) -> None:
    pdf = base64.encodebytes(os.urandom(attachment_mb * 1_000_000)).replace(b"\n", b"\r\n")
    spool = Spool(directory)
    spool.open()
    try:
        for index in range(messages):
            sender = SENDERS[index % len(SENDERS)]
            spool.store(
                Arrival(
                    mail_from=sender,
                    rcpt_tos=("alice@bench.example",),
                    client="bench",
                    peer="127.0.0.1",
                    listener="bench",
                ),
                scan(index, sender, pdf) if attachment_mb else body(index, sender, size),
            )
    finally:
        spool.close()


async def run_once(work: Path, aside: Path, arguments: argparse.Namespace) -> dict[str, float]:
    messages = arguments.messages
    await asyncio.to_thread(fill, work / "spool", messages, arguments.size, arguments.attachment_mb)
    settings = EmulatorSettings(
        state_dir=aside / "emulator", faults=Faults(latency_ms=arguments.graph_latency_ms)
    )
    async with (
        running_emulator(settings) as emulator,
        running_gateway(
            work,
            emulator,
            concurrency=arguments.concurrency,
            aside=aside,
            large=arguments.attachment_mb > 0,
        ) as (
            gateway,
            _port,
        ),
    ):
        started = time.monotonic()
        deadline = started + 60 + messages / 10
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
            "rate": (messages - 1) / span if span > 0 else float("nan"),
            "all_in_s": time.monotonic() - started,
            "gateway_ms": 1000 * gateway_cpu / counted if counted else float("nan"),
            "emulator_ms": 1000 * emulator_cpu / counted if counted else float("nan"),
            "per_mailbox": max(emulator.stats.max_concurrency_by_mailbox.values()),
            "rss_mb": peak_rss_mb(gateway.pid),
        }


async def main(arguments: argparse.Namespace) -> None:
    configure_logging("warning", "json")  # the emulator in this process logs every message
    what = (
        f"{arguments.attachment_mb} MB PDF attached"
        if arguments.attachment_mb
        else f"{arguments.size} bytes"
    )
    print(
        f"messages: {arguments.messages} x {what}, queued from 20 mailboxes; "
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
            f"delivered {result['rate']:6.1f} msg/s, all {result['all_in_s']:.1f} s after the "
            f"gateway started; CPU per message: gateway "
            f"{result['gateway_ms']:.2f} ms, emulator {result['emulator_ms']:.2f} ms; "
            f"max {result['per_mailbox']} requests in flight per mailbox; "
            f"peak RSS {result['rss_mb']} MB"
        )
    if len(runs) > 1:
        print(
            f"median of {len(runs)} runs: delivered "
            f"{statistics.median(r['rate'] for r in runs):.1f} msg/s; gateway "
            f"{statistics.median(r['gateway_ms'] for r in runs):.2f} ms CPU per message; "
            f"worst peak RSS {max(r['rss_mb'] for r in runs)} MB"
        )


if __name__ == "__main__":
    parser = bench_arguments(__doc__, messages=5000)
    parser.add_argument(
        "--attachment-mb",
        type=int,
        default=0,
        help="queue messages with a PDF of this many MB attached (the large-message path)",
    )
    asyncio.run(main(parser.parse_args()))
