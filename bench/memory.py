"""Memory while receiving and delivering large scans: the gateway's RSS above its idle RSS.

Starts the gateway (`python -m gateway serve`, large messages on) against the emulator and
sends, over raw sockets from threads, (1) one 100 MiB scan, (2) four 40 MiB scans at once,
then (3) lets the 100 MiB one be delivered through upload sessions. The gateway's RSS is
sampled every few milliseconds from /proc; a phase's peak is the highest sample in it, minus
the RSS the gateway had at rest just before. Receiving ends at the last `250`; delivering at
the emulator's receipt of the message. During (1) and (2) Graph holds every request, so
nothing is delivered yet (delivery's memory is phase 3's).

`PYTHONPATH=/path/to/another/checkout` runs another version of the gateway (the subprocess
imports it first), to compare before and after.

Run: .venv/bin/python bench/memory.py [--big-mb 100] [--small-mb 40] [--small-count 4]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

from accept import running_gateway, wait_ready

from gateway.emulator import EmulatorSettings, Faults, running_emulator
from gateway.observability.logging import configure_logging

MIB = 1024 * 1024


def scan(size: int, index: int) -> bytes:
    """A scanner's message of about `size` bytes: a PDF attachment in base64, CRLF lines."""
    pdf = base64.encodebytes(os.urandom(size * 3 // 4)).replace(b"\n", b"\r\n")
    head = (
        f"From: <scanner@bench.example>\r\nTo: <alice@bench.example>\r\nSubject: scan {index}\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nScan attached.\r\n--b\r\n"
        'Content-Type: application/pdf; name="scan.pdf"\r\nContent-Transfer-Encoding: base64\r\n'
        'Content-Disposition: attachment; filename="scan.pdf"\r\n\r\n'
    )
    return head.encode() + pdf + b"--b--\r\n"


def rss_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:  # the process has ended
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Sampler:
    """Samples a process's RSS every 5 ms in a thread; `peak()` since the last `reset()`."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self._peak = max(self._peak, rss_mb(self._pid))

    def reset(self) -> None:
        self._peak = rss_mb(self._pid)

    def peak(self) -> float:
        return self._peak

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def send(port: int, message: bytes) -> str:
    """One SMTP transaction on a raw socket; the reply to DATA."""
    with socket.create_connection(("127.0.0.1", port), timeout=300) as sock:
        reader = sock.makefile("rb")

        def reply() -> str:
            while True:
                line = reader.readline().decode()
                if line[3:4] != "-":
                    return line.strip()

        reply()
        for command in (
            b"EHLO bench",
            b"MAIL FROM:<scanner@bench.example>",
            b"RCPT TO:<alice@bench.example>",
            b"DATA",
        ):
            sock.sendall(command + b"\r\n")
            reply()
        view = memoryview(message.replace(b"\r\n.", b"\r\n.."))
        for start in range(0, len(view), MIB):
            sock.sendall(view[start : start + MIB])
        sock.sendall(b".\r\n")
        answer = reply()
        sock.sendall(b"QUIT\r\n")
        return answer


async def receive(port: int, messages: list[bytes], sampler: Sampler, idle: float) -> float:
    sampler.reset()
    answers = await asyncio.gather(*(asyncio.to_thread(send, port, m) for m in messages))
    peak = sampler.peak()
    bad = [answer for answer in answers if not answer.startswith("250")]
    if bad:
        raise RuntimeError(f"not accepted: {bad}")
    return peak - idle


async def main(arguments: argparse.Namespace) -> None:
    configure_logging("warning", "json")
    big = scan(arguments.big_mb * MIB, 0)
    small = [scan(arguments.small_mb * MIB, n + 1) for n in range(arguments.small_count)]
    hold = Faults(latency_ms=3_600_000)  # Graph holds every request: receiving alone
    with tempfile.TemporaryDirectory(prefix="sgg-memory-") as work:
        settings = EmulatorSettings(state_dir=Path(work) / "emulator", faults=hold)
        async with (
            running_emulator(settings) as emulator,
            running_gateway(Path(work), emulator, concurrency=4, aside=Path(work), large=True) as (
                gateway,
                port,
            ),
        ):
            await wait_ready(port)
            await asyncio.sleep(1)
            sampler = Sampler(gateway.pid)
            idle = rss_mb(gateway.pid)
            print(f"gateway at rest: {idle:.1f} MB RSS")
            one = await receive(port, [big], sampler, idle)
            print(f"receiving 1 x {arguments.big_mb} MiB: peak {one:+.1f} MB over idle")
            several = await receive(port, small, sampler, idle)
            print(
                f"receiving {arguments.small_count} x {arguments.small_mb} MiB at once: "
                f"peak {several:+.1f} MB over idle"
            )
            sampler.stop()
        # Phase 3: a fresh gateway and Graph answering, the 100 MiB message delivered.
        (Path(work) / "deliver").mkdir()
        settings = EmulatorSettings(state_dir=Path(work) / "emulator2")
        async with (
            running_emulator(settings) as emulator,
            running_gateway(
                Path(work) / "deliver", emulator, concurrency=4, aside=Path(work), large=True
            ) as (gateway, port),
        ):
            await wait_ready(port)
            await asyncio.sleep(1)
            sampler = Sampler(gateway.pid)
            idle = rss_mb(gateway.pid)
            await asyncio.to_thread(send, port, big)
            sampler.reset()
            started = time.monotonic()
            await emulator.wait_delivered(1, timeout=600)
            sampler.stop()
            print(
                f"delivering 1 x {arguments.big_mb} MiB through upload sessions: peak "
                f"{sampler.peak() - idle:+.1f} MB over idle ({time.monotonic() - started:.1f} s)"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--big-mb", type=int, default=100)
    parser.add_argument("--small-mb", type=int, default=40)
    parser.add_argument("--small-count", type=int, default=4)
    asyncio.run(main(parser.parse_args()))
