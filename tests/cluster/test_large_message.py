"""A 150 MiB scan through the PostgreSQL queue and Graph's upload sessions: streamed into chunk
rows as DATA arrives, read back chunk by chunk into a file no name leads to, uploaded piece by
piece. The gateway's resident memory stays below its idle size plus 100 MB throughout."""

from __future__ import annotations

import asyncio
import base64
import os
import smtplib
import threading
from pathlib import Path

from gateway.emulator import Emulator
from tests.support.cluster import make_node

MIB = 1024 * 1024


def scan(size: int) -> bytes:
    """A scanner's message of about `size` bytes: a PDF in base64, CRLF lines."""
    pdf = base64.encodebytes(
        os.urandom(size * 57 // 78)
    )  # 57 bytes make a 78-byte line.replace(b"\n", b"\r\n")
    head = (
        "From: <scanner@contoso.com>\r\nTo: <alice@contoso.com>\r\nSubject: big scan\r\n"
        "Message-ID: <big-scan@load.test>\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nScan attached.\r\n--b\r\n"
        'Content-Type: application/pdf; name="scan.pdf"\r\nContent-Transfer-Encoding: base64\r\n'
        'Content-Disposition: attachment; filename="scan.pdf"\r\n\r\n'
    )
    return head.encode() + pdf + b"--b--\r\n"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_150_mib_through_postgresql_in_bounded_memory(
    tmp_path: Path, emulator: Emulator, pg_dsn: str
) -> None:
    node = make_node(tmp_path, emulator, pg_dsn, "node-a")
    text = node.config.read_text()
    text = text.replace(
        "hostname: gateway.test", "hostname: gateway.test\n  max_message_size: 150MiB"
    )
    text = text.replace(
        "  name: contoso\n", "  name: contoso\n  large_messages: true\n  max_message_size: 150MiB\n"
    )
    node.config.write_text(text)
    message = scan(150 * MIB - 256 * 1024)  # Graph's ceiling, headers included
    try:
        await node.start()
        assert node.process is not None
        pid = node.process.process.pid
        await asyncio.sleep(1)
        idle = rss_mb(pid)
        peak = idle
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                try:
                    peak = max(peak, rss_mb(pid))
                except (FileNotFoundError, AssertionError):
                    return  # the process ended; the test says why
                stop.wait(0.005)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()

        def send() -> None:
            with smtplib.SMTP("127.0.0.1", node.port, timeout=120) as client:
                client.sendmail("scanner@contoso.com", ["alice@contoso.com"], message)

        await asyncio.to_thread(send)
        try:
            [delivered] = await emulator.wait_delivered(1, timeout=240)
        except TimeoutError:
            raise AssertionError(f"not delivered: {node.process.events[-8:]}") from None
        finally:
            stop.set()
        sampler.join()
        assert b"big-scan@load.test" in delivered.mime[:4096]
        assert len(delivered.mime) >= 149 * MIB
        assert peak - idle < 100, f"peak {peak:.0f} MB, idle {idle:.0f} MB"
        await node.process.wait_for_event("delivered", timeout=30)  # logged after Graph's 202
        assert await node.stop() == 0
    finally:
        await node.cleanup()
