"""SMTP load generator: N messages over S concurrent sessions, one connection per message.

Prints one JSON line: messages accepted, elapsed seconds, rate, and DATA→250 latencies
(from the final dot to the reply). Senders rotate over --senders addresses.
Run: python bench/loadgen.py --port P --messages 2000 --sessions 20 --size 4096
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time

_FILLER: dict[int, bytes] = {}


def sender_addresses(count: int) -> list[str]:
    """The sender mailboxes the benches spread mail over."""
    return [f"sender{n:02d}@bench.example" for n in range(count)]


def body(index: int, sender: str, size: int) -> bytes:
    head = (
        f"From: <{sender}>\r\nTo: <alice@bench.example>\r\nSubject: bench {index}\r\n"
        f"Message-ID: <bench-{index}@bench.example>\r\n\r\n"
    ).encode()
    filler = _FILLER.get(size)
    if filler is None:  # built once per size: the generator must not be the bottleneck
        line = b"x" * 76 + b"\r\n"
        filler = _FILLER[size] = line * max(0, (size - len(head)) // len(line))
    return head + filler


async def reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await reader.readline()
        if not line or line[3:4] != b"-":
            return line


async def one(port: int, index: int, sender: str, size: int) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await reply(reader)
        for command in (
            b"EHLO loadgen",
            f"MAIL FROM:<{sender}>".encode(),
            b"RCPT TO:<alice@bench.example>",
            b"DATA",
        ):
            writer.write(command + b"\r\n")
            answer = await reply(reader)
            if answer[:1] not in (b"2", b"3"):
                raise RuntimeError(answer.decode(errors="replace").strip())
        writer.write(body(index, sender, size))
        started = time.perf_counter()
        writer.write(b".\r\n")
        answer = await reply(reader)
        latency = time.perf_counter() - started
        if not answer.startswith(b"250"):
            raise RuntimeError(answer.decode(errors="replace").strip())
        writer.write(b"QUIT\r\n")
        await reply(reader)
        return latency
    finally:
        writer.close()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def main(args: argparse.Namespace) -> None:
    senders = sender_addresses(args.senders)
    latencies: list[float] = []
    failures = 0
    counter = iter(range(args.messages))

    async def session() -> None:
        nonlocal failures
        for index in counter:
            try:
                latencies.append(
                    await one(args.port, index, senders[index % len(senders)], args.size)
                )
            except (OSError, RuntimeError):
                failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(session() for _ in range(args.sessions)))
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2)

    print(
        json.dumps(
            {
                "accepted": len(latencies),
                "failures": failures,
                "elapsed_s": round(elapsed, 3),
                "rate": round(len(latencies) / elapsed, 1),
                "p50_ms": pct(0.5),
                "p99_ms": pct(0.99),
                "max_ms": round(latencies[-1] * 1000, 2) if latencies else None,
                "loadgen_cpu_s": round(cpu_seconds(), 2),
            }
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--senders", type=int, default=20)
    asyncio.run(main(parser.parse_args()))
