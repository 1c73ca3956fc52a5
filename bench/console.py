"""Console latency with a deep queue, and what the console costs the SMTP side.

Fills a file spool with `--messages` held messages (held, so the gateway delivers nothing
while it is measured), starts the gateway with the console on loopback, signs in, and times
`--requests` sequential requests of: the queue page (HTML), the API list, the API list of
held messages only, and the API list filtered by sender (which reads every envelope once,
unlike the state and age filters, which use the queue's IDs).

Then, in the same run, the accept rate (bench/loadgen.py: `--accept-messages` messages, 20
sessions, 4 KiB) with the console closed, and again with it open: `--viewers` signed-in
clients each loading the overview and the queue page every second (ten times as often as
the overview reloads itself).

The spool is filled in `--dir` (default /dev/shm, so the fill's fsyncs are cheap); the
timings then measure the console and the spool's reads from the page cache, not a cold disk.

Run: .venv/bin/python bench/console.py [--messages 100000] [--requests 20] [--dir /dev/shm]
         [--accept-messages 2000] [--viewers 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

from gateway.app import Gateway
from gateway.config import load_config
from gateway.observability.logging import configure_logging
from gateway.passwords import hash_password
from gateway.queue.model import Arrival
from gateway.spool.store import Spool

PASSWORD = "bench-console-password"  # noqa: S105 - a throwaway user of a throwaway gateway
SENDERS = [f"scanner{n}@bench.example" for n in range(20)]


def fill(directory: Path, messages: int) -> None:
    spool = Spool(directory)
    spool.open()
    try:
        for index in range(messages):
            sender = SENDERS[index % len(SENDERS)]
            body = (
                f"From: <{sender}>\r\nTo: <alice@bench.example>\r\nSubject: scan {index}\r\n"
                f"Message-ID: <{index}@bench.example>\r\n\r\nScan {index}.\r\n"
            ).encode()
            queue_id = spool.store(
                Arrival(
                    mail_from=sender,
                    rcpt_tos=("alice@bench.example",),
                    client="bench",
                    peer="127.0.0.1",
                    listener="bench",
                ),
                body,
            )
            spool.hold(queue_id, {"reason": "held for the benchmark"}, state="queue")
            if index and index % 10_000 == 0:
                print(f"  filled {index}", flush=True)
    finally:
        spool.close()


def config(work: Path) -> Path:
    document = {
        "smtp": {"listeners": [{"name": "lan", "address": "127.0.0.1", "port": 0}]},
        "tenants": [
            {
                "name": "bench",
                "tenant_id": "bench-tenant",
                "client_id": "bench-client",
                "client_secret": "bench-secret",
                "domains": ["bench.example"],
                "login_endpoint": "https://127.0.0.1:9",
                "graph_endpoint": "https://127.0.0.1:9/v1.0",
            }
        ],
        "spool": {"directory": str(work / "spool"), "max_messages": 1_000_000},
        "delivery": {"retry_initial": "1h", "retry_max": "2h", "concurrency": 2},
        "console": {
            "listen": "127.0.0.1:0",
            "users": [
                {"username": "bench", "password_hash": hash_password(PASSWORD), "role": "operator"}
            ],
        },
        "logging": {"level": "warning"},
    }
    path = work / "gateway.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


async def sign_in(http: aiohttp.ClientSession, base: str) -> None:
    async with http.get(f"{base}/signin") as response:
        page = await response.text()
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match
    form = {"csrf": match.group(1), "username": "bench", "password": PASSWORD, "next": "/"}
    async with http.post(f"{base}/signin", data=form, allow_redirects=False) as response:
        assert response.status == 303, response.status


async def timed(http: aiohttp.ClientSession, url: str, requests: int) -> list[float]:
    took = []
    for _ in range(requests):
        start = time.perf_counter()
        async with http.get(url) as response:
            await response.read()
            assert response.status == 200, (url, response.status)
        took.append(time.perf_counter() - start)
    return took


async def accept(port: int, messages: int) -> dict[str, float]:
    """bench/loadgen.py against the gateway's SMTP listener: its JSON line."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).resolve().parent / "loadgen.py"),
        "--port",
        str(port),
        "--messages",
        str(messages),
        "--sessions",
        "20",
        "--size",
        "4096",
        "--senders",
        "20",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    return json.loads(out)  # type: ignore[no-any-return]


async def viewer(base: str, stop: asyncio.Event, pages: list[int]) -> None:
    """One signed-in operator whose overview and queue page reload every second."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await sign_in(http, base)
        while not stop.is_set():
            for path in ("/", "/queue"):
                async with http.get(base + path) as response:
                    await response.read()
                pages[0] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


async def accept_with_and_without(base: str, port: int, messages: int, viewers: int) -> None:
    closed = await accept(port, messages)
    stop = asyncio.Event()
    pages = [0]
    watching = [asyncio.create_task(viewer(base, stop, pages)) for _ in range(viewers)]
    try:
        opened = await accept(port, messages)
    finally:
        stop.set()
        await asyncio.gather(*watching)
    for name, result in (("console closed", closed), (f"console open ({viewers} viewers)", opened)):
        print(
            f"accept, {name:<26} {result['rate']:8.1f} msg/s   DATA->250 p50 "
            f"{result['p50_ms']:7.1f} ms  p99 {result['p99_ms']:7.1f} ms  "
            f"failures {result['failures']}",
            flush=True,
        )
    print(f"  (the viewers loaded {pages[0]} pages meanwhile)")


def summary(name: str, took: list[float]) -> str:
    ordered = sorted(took)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"{name:<34} p50 {statistics.median(ordered) * 1000:8.1f} ms   p99 {p99 * 1000:8.1f} ms"


async def main(arguments: argparse.Namespace) -> None:
    configure_logging("warning", "console")
    work = Path(tempfile.mkdtemp(prefix="sgg-console-bench-", dir=arguments.dir))
    try:
        print(f"filling {arguments.messages} held messages in {work} ...", flush=True)
        start = time.perf_counter()
        await asyncio.to_thread(fill, work / "spool", arguments.messages)
        print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)
        gateway = Gateway(load_config(config(work)))
        await gateway.startup()
        try:
            assert gateway.console is not None
            base = f"http://127.0.0.1:{gateway.console.port}"
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                await sign_in(http, base)
                cases = [
                    ("queue page (HTML), first page", "/queue"),
                    ("API list, first page", "/api/v1/messages"),
                    ("API list, state=held", "/api/v1/messages?state=held"),
                    ("API list, sender filter", "/api/v1/messages?sender=scanner7%40"),
                ]
                print(f"{arguments.messages} messages, {arguments.requests} requests each:")
                for name, path in cases:
                    took = await timed(http, base + path, arguments.requests)
                    print(summary(name, took), flush=True)
            if arguments.accept_messages:
                assert gateway.listeners is not None
                port = gateway.listeners.bound[0].port
                await accept_with_and_without(
                    base, port, arguments.accept_messages, arguments.viewers
                )
        finally:
            await gateway.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--accept-messages", type=int, default=2000)
    parser.add_argument("--viewers", type=int, default=3)
    shm = Path("/dev/shm")  # noqa: S108 - a private mkdtemp folder is made inside it
    parser.add_argument("--dir", default=str(shm) if shm.is_dir() else None)
    asyncio.run(main(parser.parse_args()))
