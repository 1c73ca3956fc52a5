"""A log nobody reads (journald stuck, a full pipe) must not stop the gateway's mail."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path

from gateway.emulator import Emulator
from tests.support.gateway import config_document, write_config
from tests.support.load import load_message
from tests.support.ports import free_port

F_SETPIPE_SZ = 1031  # Linux
MESSAGES = 60


async def test_mail_flows_while_nobody_reads_the_log(tmp_path: Path, emulator: Emulator) -> None:
    port = free_port()
    document = config_document(tmp_path, emulator, logging={"level": "debug", "format": "json"})
    document["smtp"]["listeners"][0]["port"] = port
    document["delivery"].update(concurrency=8, mailbox_rate=0)
    config = write_config(tmp_path, document)
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, F_SETPIPE_SZ, 4096)  # a few lines fill it; then writes would block
    daemon = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=write_end,
    )
    os.close(write_end)
    try:

        def send_all() -> list[dict[str, object]]:
            answers = []
            for attempt in range(200):  # wait for the listener without reading the log
                try:
                    smtplib.SMTP("127.0.0.1", port, timeout=5).quit()
                    break
                except OSError:
                    if attempt == 199:
                        raise
                    time.sleep(0.05)
            for index in range(MESSAGES):
                with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                    answers.append(
                        client.sendmail(
                            "scanner@contoso.com",
                            ["alice@contoso.com"],
                            load_message(f"blocked-{index}@log.test"),
                        )
                    )
            return answers

        answers = await asyncio.to_thread(send_all)
        assert answers == [{}] * MESSAGES  # every message answered 250, with the log stuck
        await emulator.wait_delivered(MESSAGES, timeout=30)
        assert daemon.poll() is None

        daemon.send_signal(signal.SIGTERM)  # now read the log: nothing logged was lost
        log = await asyncio.to_thread(read_all, read_end)
        assert await asyncio.to_thread(daemon.wait, 30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        os.close(read_end)
    events = [json.loads(line) for line in log.splitlines()]
    assert sum(1 for event in events if event.get("event") == "delivered") == MESSAGES
    assert events[-1]["event"] == "stopped"
    assert not [event for event in events if event.get("event") == "log_lines_dropped"]


def read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode()
