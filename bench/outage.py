"""Recovery after a Graph outage: how soon mail queued during it arrives once Graph is back,
and how hard the gateway knocks on Graph while it lasts.

The emulator answers every Graph request with 503 for `--outage-seconds` (5 minutes by
default); meanwhile 300 messages from 10 sender mailboxes arrive over SMTP, spread over the
first 80 % of the outage. The gateway (`python -m gateway serve`) runs with the delivery
settings as shipped — retry 1 m doubling to 1 h, four requests and 30 messages a minute per
mailbox — unless `--mailbox-rate` says otherwise. Prints:

- the flush time: the last delivery minus the end of the outage (and the first delivery);
- the requests during the outage: the burst that found it, then the most requests in any
  window of one probe interval (the promise: one per tenant per interval).

Run: .venv/bin/python bench/outage.py [--outage-seconds 300] [--messages 300] [--mailboxes 10]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import tempfile
import time
from pathlib import Path

from accept import running_gateway, wait_ready
from loadgen import one, sender_addresses

from gateway.delivery.outages import DEFAULT_PROBE_INTERVAL
from gateway.emulator import EmulatorSettings, Faults, running_emulator
from gateway.observability.logging import configure_logging


def busiest_window(times: list[float], width: float) -> int:
    """The most of `times` (sorted) in any half-open window `width` long."""
    return max(
        (bisect.bisect_left(times, start + width) - index for index, start in enumerate(times)),
        default=0,
    )


async def run(arguments: argparse.Namespace, work: Path) -> None:
    outage = arguments.outage_seconds
    senders = sender_addresses(arguments.mailboxes)
    settings = EmulatorSettings(state_dir=work / "emulator")
    async with running_emulator(settings) as emulator:
        config_overrides = {"mailbox_rate": arguments.mailbox_rate}
        async with running_gateway(
            work, emulator, concurrency=8, aside=work, delivery=config_overrides
        ) as (_gateway, port):
            await wait_ready(port)
            emulator.set_faults(Faults(outage_seconds=outage))
            began = time.time()
            ends = began + outage
            spread = 0.8 * outage / arguments.messages
            for index in range(arguments.messages):
                await asyncio.sleep(max(0.0, began + index * spread - time.time()))
                await one(port, index, senders[index % len(senders)], arguments.size)
            accepted = time.time()
            deadline = ends + arguments.wait
            while len(emulator.delivered()) < arguments.messages:
                if time.time() > deadline:
                    raise RuntimeError(
                        f"only {len(emulator.delivered())} of {arguments.messages} delivered "
                        f"{arguments.wait:.0f} s after the outage ended"
                    )
                await asyncio.sleep(0.1)
    requests = emulator.stats.requests
    during = sorted(r.time for r in requests if began <= r.time < ends)
    unavailable = [r.time for r in requests if r.status == 503]
    # The burst that found the outage: the requests up to the second 503 (two in a row).
    found = unavailable[1] if len(unavailable) > 1 else began
    after = [t for t in during if t > found]
    delivered = sorted(r.time for r in requests if r.status == 202)
    interval = min(DEFAULT_PROBE_INTERVAL, 60.0)  # (retry_initial as shipped: 1 m)
    print(
        f"outage {outage:.0f} s; {arguments.messages} messages from {arguments.mailboxes} "
        f"mailboxes accepted in its first {accepted - began:.0f} s; delivery settings as "
        f"shipped, mailbox_rate {arguments.mailbox_rate}/min"
    )
    print(
        f"flush: first delivery {delivered[0] - ends:+.1f} s, last delivery "
        f"{delivered[-1] - ends:+.1f} s after the outage ended"
    )
    print(
        f"requests during the outage: {len(during)} ({len(during) - len(after)} until it was "
        f"found {found - began:.1f} s in, then {len(after)}); most in any "
        f"{interval:g} s window after it was found: {busiest_window(after, interval)}"
    )


async def main(arguments: argparse.Namespace) -> None:
    configure_logging("warning", "json")  # the emulator in this process logs every request
    with tempfile.TemporaryDirectory(prefix="sgg-outage-") as work:
        await run(arguments, Path(work))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--outage-seconds", type=float, default=300.0)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--mailboxes", type=int, default=10)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument(
        "--mailbox-rate",
        type=int,
        default=30,
        help="delivery.mailbox_rate (messages a minute per mailbox; 30 as shipped, 0 unpaced)",
    )
    parser.add_argument(
        "--wait", type=float, default=600.0, help="seconds after the outage to wait for all"
    )
    asyncio.run(main(parser.parse_args()))
