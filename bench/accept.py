"""Accept and delivery throughput: a bare fsyncing aiosmtpd sink vs the gateway, side by side.

Both are loaded the same way (bench/loadgen.py: 20 concurrent sessions, 4 KiB messages, one
connection per message). The gateway delivers to the emulator answering every Graph request
after 50 ms, with mail spread over 20 sender mailboxes. Prints the sink's and the gateway's
accept rate and DATA→250 latency, the gateway's delivered rate, its peak RSS and where the CPU
went. `--accept-only` makes Graph hold every request, so only the accept path runs.

Everything runs on the same machine, so the `capacity` line adds up the CPU per message of
the gateway (accepting and delivering), the emulator and the load generator, and says how many
cores accepting at 90 % of the sink's rate while delivering everything would take at that
cost, beside how many were busy on average. This
machine's speed drifts by a third from minute to minute: use `--runs 5` and read the medians.

Only the sink's files and the gateway's spool are on the disk under test. The emulator's outbox
(two files per message) and the gateway's log go to `--aside` (/dev/shm by default): in
production Graph's storage is not on this disk and the log goes to journald through a socket,
and on ext4 their file creations and appends would wait on the same journal as the spool's
fsyncs. `--aside ''` puts them beside the spool to see what that costs.

Run: .venv/bin/python bench/accept.py [--messages 3000] [--runs 5] [--accept-only] [--aside DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import yaml

from gateway.emulator import EmulatorSettings, Faults, running_emulator
from gateway.observability.logging import configure_logging

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def load(port: int, messages: int, size: int) -> dict[str, float]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "loadgen.py"),
        "--port",
        str(port),
        "--messages",
        str(messages),
        "--sessions",
        "20",
        "--size",
        str(size),
        "--senders",
        "20",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    return json.loads(out)  # type: ignore[no-any-return]


async def wait_ready(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
        else:
            writer.close()
            return
    raise RuntimeError(f"nothing listens on {port}")


def cpu_seconds(pid: int, part: slice = slice(11, 13)) -> float:
    """CPU seconds a live process has used so far: user + system, or only system time with
    `part=SYSTEM`."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return round(sum(int(n) for n in fields[part]) / os.sysconf("SC_CLK_TCK"), 2)


SYSTEM = slice(12, 13)


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


async def load_server(script: str, *args: str, messages: int, size: int) -> dict[str, float]:
    """Start `bench/<script> PORT *args` in its own process, load it, stop it."""
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / script), str(port), *args, stdout=asyncio.subprocess.DEVNULL
    )
    try:
        await wait_ready(port)
        result = await load(port, messages, size)
        result["server_cpu_s"] = cpu_seconds(server.pid)
        return result
    finally:
        server.terminate()
        await server.wait()


async def bench_sink(work: Path, messages: int, size: int) -> dict[str, float]:
    return await load_server("sink.py", str(work / "sink"), messages=messages, size=size)


def gateway_config(
    emulator: Any,
    port: int,
    spool: Path,
    concurrency: int,
    *,
    large: bool = False,
    delivery: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The gateway's configuration for the benches: one tenant on the emulator for
    bench.example, no pacing, JSON logs at info. `large`: messages up to 150 MB, through
    drafts and upload sessions. `delivery`: that section instead (with `concurrency`), the
    rest as shipped."""
    config: dict[str, Any] = {
        "smtp": {
            "hostname": "bench",
            "listeners": [{"name": "bench", "port": port}],
            "max_recipients": 500,
        },
        "tenants": [
            {
                "name": "bench",
                "tenant_id": "bench",
                "client_id": "bench",
                "client_secret": "bench",
                "domains": ["bench.example"],
                "login_endpoint": emulator.login_endpoint,
                "graph_endpoint": emulator.graph_endpoint,
                "ca_file": str(emulator.ca_file),
            }
        ],
        "spool": {"directory": str(spool)},
        # Pacing off: Exchange's 30 a minute per mailbox would cap 20 mailboxes at 10/s.
        "delivery": {"concurrency": concurrency, "mailbox_rate": 0},
        "logging": {"level": "info", "format": "json"},
    }
    if delivery is not None:
        config["delivery"] = {"concurrency": concurrency, **delivery}
    if large:
        config["smtp"]["max_message_size"] = "150MB"
        config["tenants"][0].update(large_messages=True, max_message_size="150MB")
    return config


@contextlib.asynccontextmanager
async def running_gateway(
    work: Path,
    emulator: Any,
    *,
    concurrency: int,
    aside: Path,
    large: bool = False,
    delivery: dict[str, Any] | None = None,
    spool: dict[str, Any] | None = None,
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    """`python -m gateway serve` on a free port with its spool in `work` (or the `spool`
    section given) and its log on `aside`; (process, port) once it is started, stopped on
    exit."""
    port = free_port()
    config = gateway_config(
        emulator, port, work / "spool", concurrency, large=large, delivery=delivery
    )
    if spool is not None:
        config["spool"] = spool
    (work / "gateway.yaml").write_text(yaml.safe_dump(config))
    with (aside / "gateway.log").open("wb") as log:
        gateway = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--config",
            str(work / "gateway.yaml"),
            stderr=log,
            stdout=asyncio.subprocess.DEVNULL,
        )
        try:
            yield gateway, port
        finally:
            gateway.terminate()
            await gateway.wait()


async def bench_gateway(
    work: Path,
    messages: int,
    size: int,
    *,
    latency_ms: int = 50,
    accept_only: bool = False,
    concurrency: int = 32,
    aside: Path,
) -> dict[str, float]:
    """`aside`: where the emulator's outbox and the gateway's log go (see the module's doc)."""
    settings = EmulatorSettings(state_dir=aside / "emulator", faults=Faults(latency_ms=latency_ms))
    async with (
        running_emulator(settings) as emulator,
        running_gateway(work, emulator, concurrency=concurrency, aside=aside) as (gateway, port),
    ):
        await wait_ready(port)
        emulator_cpu = own_cpu_seconds()
        started = time.perf_counter()
        result = await load(port, messages, size)
        result["server_cpu_s"] = cpu_seconds(gateway.pid)
        result["server_sys_s"] = cpu_seconds(gateway.pid, SYSTEM)
        if accept_only:  # Graph holds every request: only the accept path ran
            result["peak_rss_mb"] = peak_rss_mb(gateway.pid)
            return result
        while len(emulator.delivered()) < result["accepted"]:
            await asyncio.sleep(0.05)
        delivered_in = time.perf_counter() - started
        result["delivered_rate"] = round(result["accepted"] / delivered_in, 1)
        result["peak_rss_mb"] = peak_rss_mb(gateway.pid)
        after = cpu_seconds(gateway.pid) - result["server_cpu_s"]
        result["delivery_cpu_s"] = round(after, 2)
        result["emulator_cpu_s"] = round(own_cpu_seconds() - emulator_cpu, 2)
        result["graph_max_concurrency_per_mailbox"] = max(
            emulator.stats.max_concurrency_by_mailbox.values()
        )
        return result


def report(sink: dict[str, Any], gateway: dict[str, Any], latency_ms: int) -> dict[str, float]:
    """Print one run; its ratios (and the gateway's p99 and RSS) for the summary."""
    accept_only = "delivered_rate" not in gateway
    print(
        f"sink    : {sink['rate']:7.1f} msg/s accepted, DATA->250 p50 {sink['p50_ms']} ms, "
        f"p99 {sink['p99_ms']} ms, failures {sink['failures']}"
    )
    print(
        f"gateway : {gateway['rate']:7.1f} msg/s accepted, DATA->250 p50 {gateway['p50_ms']} ms, "
        f"p99 {gateway['p99_ms']} ms, failures {gateway['failures']}"
    )
    print(
        f"cpu     : sink {sink['server_cpu_s']} s + loadgen {sink['loadgen_cpu_s']} s; gateway "
        f"{gateway['server_cpu_s']} s (system {gateway['server_sys_s']} s) + loadgen "
        f"{gateway['loadgen_cpu_s']} s while accepting"
        + (
            ""
            if accept_only
            else f"; after: gateway {gateway['delivery_cpu_s']} s; emulator "
            f"{gateway['emulator_cpu_s']} s in all"
        )
    )
    ratios = {
        "accept": gateway["rate"] / sink["rate"],
        "p99_ms": gateway["p99_ms"],
        "rss_mb": gateway["peak_rss_mb"],
    }
    if accept_only:
        print(f"gateway : peak RSS {gateway['peak_rss_mb']} MB (Graph held every request)")
        print(f"ratios  : accept {ratios['accept']:.0%} of the sink")
        return ratios
    ratios["delivered"] = gateway["delivered_rate"] / gateway["rate"]
    print(
        f"gateway : {gateway['delivered_rate']:7.1f} msg/s delivered (Graph answering in "
        f"{latency_ms} ms, 20 mailboxes), max {gateway['graph_max_concurrency_per_mailbox']} "
        "requests in flight per mailbox"
    )
    print(f"gateway : peak RSS {gateway['peak_rss_mb']} MB")
    print(
        f"ratios  : accept {ratios['accept']:.0%} of the sink, delivered "
        f"{ratios['delivered']:.0%} of accepted"
    )
    ratios.update(capacity(sink, gateway))
    return ratios


def capacity(sink: dict[str, Any], gateway: dict[str, Any]) -> dict[str, float]:
    """Where the CPU went, per message, and how many cores accepting at 90 % of the sink's rate
    while delivering everything would take at that cost (everything here shares the machine).
    """
    accepted = gateway["accepted"]
    cost = {  # CPU seconds per message, until the last one was delivered
        "gateway": (gateway["server_cpu_s"] + gateway["delivery_cpu_s"]) / accepted,
        "emulator": gateway["emulator_cpu_s"] / accepted,
        "loadgen": gateway["loadgen_cpu_s"] / accepted,
    }
    total = sum(cost.values())
    sink_cost = (sink["server_cpu_s"] + sink["loadgen_cpu_s"]) / sink["accepted"]
    found = {
        "busy_cores": total * gateway["delivered_rate"],  # on average, until all delivered
        "sink_busy_cores": sink_cost * sink["rate"],
        "needed_cores": total * 0.9 * sink["rate"],
    }
    print(
        "capacity: CPU per message "
        + " + ".join(f"{name} {seconds * 1000:.2f} ms" for name, seconds in cost.items())
        + f" = {total * 1000:.2f} ms; {found['busy_cores']:.2f} cores busy on average "
        f"(sink run {found['sink_busy_cores']:.2f}) of {os.cpu_count()}; accepting at 90 % of "
        f"the sink while delivering would take {found['needed_cores']:.2f} cores"
    )
    return found


async def main(arguments: argparse.Namespace) -> None:
    configure_logging("warning", "json")  # the emulator in this process logs every message
    latency_ms = 600_000 if arguments.accept_only else arguments.graph_latency_ms
    print(
        f"messages: {arguments.messages} x {arguments.size} bytes, 20 sessions, one connection "
        f"per message; gateway delivery.concurrency {arguments.concurrency}"
    )
    runs = []
    for run in range(1, arguments.runs + 1):
        with tempfile.TemporaryDirectory(prefix="sgg-bench-") as folder:
            work = Path(folder)
            if arguments.keep is not None:  # spool, gateway.yaml and gateway.log stay
                work = arguments.keep / f"run-{run}"
                work.mkdir(parents=True, exist_ok=True)
            # --aside '': beside the spool, on the disk under test.
            with tempfile.TemporaryDirectory(dir=arguments.aside or work) as aside:
                sink = await bench_sink(work, arguments.messages, arguments.size)
                gateway = await bench_gateway(
                    work,
                    arguments.messages,
                    arguments.size,
                    latency_ms=latency_ms,
                    accept_only=arguments.accept_only,
                    concurrency=arguments.concurrency,
                    aside=Path(aside),
                )
                if arguments.keep is not None:
                    shutil.copy(Path(aside) / "gateway.log", work / "gateway.log")
        if arguments.runs > 1:
            print(f"--- run {run} of {arguments.runs}")
        runs.append(report(sink, gateway, latency_ms))
    if len(runs) > 1:
        median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        worst = {key: max(r[key] for r in runs) for key in ("p99_ms", "rss_mb")}
        print(
            f"median of {len(runs)} runs: accept {median['accept']:.0%} of the sink"
            + (
                f", delivered {median['delivered']:.0%} of accepted"
                if "delivered" in median
                else ""
            )
            + f"; worst gateway p99 {worst['p99_ms']} ms, worst peak RSS {worst['rss_mb']} MB"
            + (
                f"; {median['busy_cores']:.2f} cores busy, 90 % of the sink would take "
                f"{median['needed_cores']:.2f}"
                if "needed_cores" in median
                else ""
            )
        )


def bench_arguments(description: str | None, messages: int) -> argparse.ArgumentParser:
    """The options accept.py and deliver.py share."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--messages", type=int, default=messages)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--graph-latency-ms", type=int, default=50)
    parser.add_argument("--runs", type=int, default=1, help="runs in turn, then the medians")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="the gateway's delivery.concurrency"
    )
    shm = "/dev/shm"  # noqa: S108 - a private directory is made inside it (mkdtemp)
    parser.add_argument(
        "--aside",
        default=shm if Path(shm).is_dir() else "",
        help="the emulator's outbox and the gateway's log go here (default /dev/shm); "
        "--aside '' puts them on the spool's disk",
    )
    return parser


if __name__ == "__main__":
    parser = bench_arguments(__doc__, messages=3000)
    parser.add_argument(
        "--accept-only",
        action="store_true",
        help="Graph holds every request, so only accepting is measured",
    )
    parser.add_argument("--keep", type=Path, help="work in this directory and leave it")
    asyncio.run(main(parser.parse_args()))
