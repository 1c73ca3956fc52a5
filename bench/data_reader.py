"""DATA reading speed: aiosmtpd's line-by-line reader vs the gateway's chunked reader.

Both are bare sinks (answer 250, store nothing) loaded the same way: 20 sessions, one
connection per message, 1 MiB and 4 KiB messages.
Run: .venv/bin/python bench/data_reader.py [--big 200] [--small 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from accept import load_server  # noqa: E402 - imported after sys.path points at the repository


async def run(kind: str, messages: int, size: int) -> dict[str, float]:
    return await load_server("data_sink.py", kind, messages=messages, size=size)


async def main(big: int, small: int) -> None:
    rows = []
    for size, count in ((1024 * 1024, big), (4096, small)):
        base = await run("aiosmtpd", count, size)
        ours = await run("gateway", count, size)
        rows.append((size, base, ours))
    for size, base, ours in rows:
        label = "1 MiB" if size > 4096 else "4 KiB"
        print(
            f"{label}: aiosmtpd {base['rate']:7.1f} msg/s (p99 {base['p99_ms']} ms) | "
            f"gateway reader {ours['rate']:7.1f} msg/s (p99 {ours['p99_ms']} ms) | "
            f"{ours['rate'] / base['rate']:.1f}x"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--big", type=int, default=200)
    parser.add_argument("--small", type=int, default=3000)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.big, arguments.small))
