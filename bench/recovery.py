"""Start-up recovery with a large queue: how long until 100,000 spooled messages are scheduled.

Writes N messages into a fresh spool (through `Spool.store`, fsync and all), leaves a tenth of
them in active/ as a crash would, then times `Spool.recover()` and scheduling every message in
the delivery engine's timetable.
Run: .venv/bin/python bench/recovery.py [--messages 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from gateway.delivery.schedule import Schedule
from gateway.spool import Spool

MESSAGE = b"From: a@contoso.com\r\nTo: b@contoso.com\r\nSubject: x\r\n\r\n" + b"x" * 3000 + b"\r\n"


async def main(count: int) -> None:
    with tempfile.TemporaryDirectory(prefix="sgg-recovery-") as folder:
        spool = Spool(Path(folder) / "spool")
        spool.open()
        started = time.perf_counter()
        ids = [
            spool.store(
                mail_from="a@contoso.com",
                rcpt_tos=("b@contoso.com",),
                message=MESSAGE,
                client="bench",
                peer="127.0.0.1",
                listener="bench",
            )
            for _ in range(count)
        ]
        written = time.perf_counter() - started
        for queue_id in ids[::10]:
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
        f"from active/); scheduling them: {scheduled:.2f} s; first due: {first == ids[0]}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    asyncio.run(main(parser.parse_args().messages))
