"""`smtp-graph-gateway queue …` against a running daemon, and with none, on both queue backends:
the file spool (through the daemon's control socket, or the spool's lock) and a cluster's
PostgreSQL queue (the database directly, from any machine)."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import smtplib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.config import format_size, load_config
from gateway.emulator import Emulator, Faults
from gateway.queues import build_queue
from tests.conftest import Logged
from tests.e2e.test_pipeline import MESSAGE
from tests.support.gateway import SPOOL, arrival, config_document, run_gateway, write_config
from tests.support.process import GatewayProcess

pytestmark = pytest.mark.usefixtures("queue_backend")  # every test on both queue backends


def queue(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "queue", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def queue_async(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(queue, config, *args)


def send(port: int, index: int) -> str:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo()
        client.mail("scanner@contoso.com")
        client.rcpt("alice@contoso.com")
        client.rcpt("bob@contoso.com")
        code, text = client.data(MESSAGE.replace(b"scan-0001", f"scan-{index:04d}".encode()))
    assert code == 250
    return text.split()[-1].decode()


def line_of(listing: str, queue_id: str) -> str:
    [line] = [line for line in listing.splitlines() if line.startswith(queue_id)]
    return line


async def test_queue_commands_against_a_running_daemon(tmp_path: Path, emulator: Emulator) -> None:
    emulator.set_faults(Faults(outage_seconds=3600))
    document = config_document(
        tmp_path, emulator, delivery={"retry_initial": "1h", "retry_max": "2h"}
    )
    config = write_config(tmp_path, document)
    gateway = await GatewayProcess.start(config)
    try:
        port = (await gateway.wait_for_event("listening"))["port"]
        ids = [await asyncio.to_thread(send, port, index) for index in range(3)]
        for _ in ids:
            await gateway.wait_for_event("deferred")
        listed = await queue_async(config, "list")
        assert listed.returncode == 0, listed.stderr
        assert "3 messages" in listed.stdout
        # One line a message, as mailq: state, size, sender -> recipients, what it waits for.
        line = line_of(listed.stdout, ids[0])
        assert " queued " in line
        assert "scanner@contoso.com -> alice@contoso.com, bob@contoso.com" in line
        # (1 attempt, or 2 when it was the outage's probe before the third message's turn)
        assert re.search(
            r"next attempt \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ after [12] attempts?: ", line
        )
        assert "503" in line or "unavailable" in line.lower()
        # --json after the action as well as before it, with the stored state names.
        after = json.loads((await queue_async(config, "list", "--json")).stdout)
        before = json.loads((await queue_async(config, "--json", "list")).stdout)
        assert [item["queue_id"] for item in after] == [item["queue_id"] for item in before]
        assert {item["state"] for item in after} == {"queue"}
        assert after[0]["rcpt_tos"] == ["alice@contoso.com", "bob@contoso.com"]

        held = await queue_async(config, "hold", ids[0])
        assert held.returncode == 0, held.stderr
        shown = json.loads((await queue_async(config, "show", ids[0], "--json")).stdout)
        assert shown["state"] == "hold"
        assert shown["hold"]["reason"] == "held by an administrator"
        assert shown["envelope"]["rcpt_tos"] == ["alice@contoso.com", "bob@contoso.com"]
        assert shown["attempts"][0]["status"] == 503
        # One size everywhere: the message as the client sent it, in list and show alike.
        size = format_size(shown["envelope"]["size"])
        text = (await queue_async(config, "show", ids[0])).stdout
        assert "state:        held" in text
        assert f"size:         {size}\n" in text
        listed = (await queue_async(config, "list", "--state", "held")).stdout
        assert f" held     {size:>9} " in line_of(listed, ids[0])
        assert "(held by an administrator)" in line_of(listed, ids[0])
        assert "1 message," in listed

        assert (await queue_async(config, "delete", ids[1])).returncode == 0
        missing = await queue_async(config, "show", ids[1])
        assert missing.returncode == 1 and "no message" in missing.stderr

        emulator.set_faults(Faults())
        assert (await queue_async(config, "retry", "--all")).returncode == 0
        await emulator.wait_delivered(1, 30)  # ids[2], long before its 1 h backoff
        assert (await queue_async(config, "release", ids[0])).returncode == 0
        await emulator.wait_delivered(2, 30)
        subjects = sorted(m.mime.split(b"Message-ID: <")[1][:9] for m in emulator.delivered())
        assert subjects == [b"scan-0000", b"scan-0002"]
        refused = await queue_async(config, "release", ids[0])
        assert refused.returncode == 1

        gateway.process.send_signal(signal.SIGTERM)
        assert await gateway.wait_exit() == 0
    finally:
        gateway.kill()


async def test_show_gives_graphs_code_and_request_id_of_a_message_held_at_once(
    tmp_path: Path, emulator: Emulator, logged: Logged
) -> None:
    emulator.set_faults(Faults(mailbox_errors={"scanner@contoso.com": "ErrorSendAsDenied"}))
    config_file = write_config(tmp_path, config_document(tmp_path, emulator))
    async with run_gateway(load_config(config_file)) as gateway:
        assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE) == {}
        held = await gateway.next_event(accept=lambda e: e.result == "held")
        shown = await queue_async(config_file, "show", held.queue_id)
        data = json.loads((await queue_async(config_file, "show", held.queue_id, "--json")).stdout)
    [line] = [line for line in logged("held") if line.get("queue_id") == held.queue_id]
    assert line["request_id"]
    [attempt] = data["attempts"]  # the attempt that held it is in its history
    assert attempt["code"] == "ErrorSendAsDenied" and attempt["request_id"] == line["request_id"]
    assert "state:        held" in shown.stdout
    assert re.search(
        rf"attempt 1: .* held 403 ErrorSendAsDenied request-id {line['request_id']}: ", shown.stdout
    )


def offline_config(tmp_path: Path) -> Path:
    document: dict[str, Any] = {
        "smtp": {"listeners": [{"name": "lan", "port": 0}]},
        "tenants": [
            {
                "name": "c",
                "tenant_id": "t",
                "client_id": "i",
                "client_secret": "s",
                "domains": ["contoso.com"],
            }
        ],
        "spool": SPOOL.get() or {"directory": str(tmp_path / "spool")},
    }
    return write_config(tmp_path, document)


async def store_one(config_file: Path) -> str:
    """A message queued with no gateway running (schema created by `db upgrade` first)."""
    config = load_config(config_file)
    if config.spool.backend == "postgresql":
        upgraded = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "gateway", "db", "upgrade", "--config", str(config_file)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert upgraded.returncode == 0, upgraded.stderr
    store = build_queue(config.spool)
    await store.open(exclusive=config.spool.backend == "files")
    try:
        return await store.store(
            arrival("a@contoso.com", "b@contoso.com", client="c"),
            MESSAGE,
        )
    finally:
        await store.close()


async def test_queue_commands_without_a_gateway_running(tmp_path: Path) -> None:
    config = offline_config(tmp_path)
    queue_id = await store_one(config)
    assert (await queue_async(config, "hold", queue_id)).returncode == 0
    assert " held " in line_of(
        (await queue_async(config, "list", "--state", "hold")).stdout, queue_id
    )
    assert "0 messages" in (await queue_async(config, "list", "--state", "queued")).stdout
    purged = await queue_async(config, "purge", "--held", "--older-than", "7d")
    assert "purged: 0 messages" in purged.stdout
    purged = await queue_async(config, "purge", "--held")
    assert f"purged: 1 message ({queue_id})" in purged.stdout
    assert "0 messages" in (await queue_async(config, "list")).stdout


async def test_a_state_nobody_knows_is_a_usage_error(tmp_path: Path) -> None:
    listed = await queue_async(offline_config(tmp_path), "list", "--state", "stuck")
    assert listed.returncode == 2
    assert "use queued, sending, held or corrupt" in listed.stderr
