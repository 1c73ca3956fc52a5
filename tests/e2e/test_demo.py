"""README's first command: `smtp-graph-gateway demo` delivers a test message into the outbox."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_files(folder: Path, pattern: str, count: int, timeout: float = 30) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(folder.glob(pattern)) if folder.exists() else []
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{count} {pattern} files did not appear in {folder}")


@pytest.fixture
def demo(tmp_path: Path):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "demo", "--smtp-port", str(port), "--state-dir",
         str(tmp_path / "demo")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("Press Ctrl-C"):
                break
        yield process, lines
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def printed(lines: list[str], prefix: str) -> str:
    return next(line.strip() for line in lines if line.strip().startswith(prefix))


def test_demo_prints_working_instructions_and_stops_on_ctrl_c(demo) -> None:
    process, lines = demo
    outbox = Path(printed(lines, "delivered mail:").split(":", 1)[1].split("(")[0].strip())
    subprocess.run(shlex.split(printed(lines, "python3 -c")), check=True, timeout=30)
    expected = 1
    if shutil.which("swaks"):
        subprocess.run(shlex.split(printed(lines, "swaks ")), check=True, timeout=30,
                       capture_output=True)
        expected = 2
    delivered = wait_for_files(outbox, "*.eml", expected)
    assert b"Hello from the gateway" in delivered[0].read_bytes()
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=20) == 0
