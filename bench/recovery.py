"""Start-up recovery with a large queue: how long until 100,000 spooled messages are scheduled.

Writes N messages into a fresh spool (through `Spool.store`, fsync and all), leaves a tenth of
them in active/ as a crash would, then times `Spool.recover()` and scheduling every message in
the delivery engine's timetable. With `--outage-deferred K`, K of the others were deferred by
an outage of their tenant (an attempt record naming it): recovery also reads those records,
so the engine can park them behind one probe (before, the engine read each one with a thread
hop of its own before the listeners were bound: 5.6-6.9 s for 20,000).
Run: .venv/bin/python bench/recovery.py [--messages 100000] [--outage-deferred 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from gateway.delivery.schedule import Schedule
from gateway.queue.model import Arrival
from gateway.spool import Spool

MESSAGE = b"From: a@contoso.com\r\nTo: b@contoso.com\r\nSubject: x\r\n\r\n" + b"x" * 3000 + b"\r\n"


async def main(count: int, outage_deferred: int) -> None:
    with tempfile.TemporaryDirectory(prefix="sgg-recovery-") as folder:
        spool = Spool(Path(folder) / "spool")
        spool.open()
        started = time.perf_counter()
        ids = [
            spool.store(
                Arrival(
                    mail_from="a@contoso.com",
                    rcpt_tos=("b@contoso.com",),
                    client="bench",
                    peer="127.0.0.1",
                    listener="bench",
                ),
                MESSAGE,
            )
            for _ in range(count)
        ]
        written = time.perf_counter() - started
        crashed = set(ids[::10])
        later = time.time() + 3600
        record = {"at": time.time(), "result": "deferred", "reason": "503", "outage": "contoso"}
        for queue_id in [queue_id for queue_id in ids if queue_id not in crashed][:outage_deferred]:
            spool.lease(queue_id)
            spool.defer(queue_id, later, record)
        for queue_id in crashed:
            (spool.directory / "queue" / f"{queue_id}.msg").rename(
                spool.directory / "active" / f"{queue_id}.msg"
            )
        spool.close()

        restarted = Spool(Path(folder) / "spool")
        started = time.perf_counter()
        restarted.open()
        found = restarted.recover()
        recovered = time.perf_counter() - started
        schedule = Schedule()
        now = time.time()
        started = time.perf_counter()
        for queued in found:
            schedule.add(queued.queue_id, max(0.0, queued.next_attempt - now))
        scheduled = time.perf_counter() - started
        first = await schedule.next()
        restarted.close()
    print(
        f"stored {count} messages in {written:.1f} s ({count / written:.0f}/s, one fsync'd "
        "write each, single thread)"
    )
    print(
        f"recover(): {recovered:.2f} s for {len(found)} messages ({count // 10} moved back "
        f"from active/, {sum(1 for due in found if due.outage)} named as deferred by an "
        f"outage); scheduling them: {scheduled:.2f} s; first due: {first == ids[0]}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--outage-deferred", type=int, default=0)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.messages, arguments.outage_deferred))
