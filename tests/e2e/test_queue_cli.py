"""`smtp-graph-gateway queue …` against a running daemon, and with no daemon."""

from __future__ import annotations

import asyncio
import json
import signal
import smtplib
import subprocess
import sys
from pathlib import Path

from gateway.emulator import Emulator, Faults
from gateway.spool import Spool
from tests.e2e.test_pipeline import MESSAGE
from tests.support.gateway import config_document, write_config
from tests.support.process import GatewayProcess


def queue(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "queue", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=60, check=False)


async def queue_async(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(queue, config, *args)


def send(port: int, index: int) -> str:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo()
        client.mail("scanner@contoso.com")
        client.rcpt("alice@contoso.com")
        code, text = client.data(MESSAGE.replace(b"scan-0001", f"scan-{index:04d}".encode()))
    assert code == 250
    return text.split()[-1].decode()


async def wait_delivered(emulator: Emulator, count: int, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while len(emulator.delivered()) < count:
            await asyncio.sleep(0.05)


async def test_queue_commands_against_a_running_daemon(tmp_path: Path, emulator: Emulator) -> None:
    emulator.set_faults(Faults(outage_seconds=3600))
    document = config_document(tmp_path, emulator,
                               delivery={"retry_initial": "1h", "retry_max": "2h"})
    config = write_config(tmp_path, document)
    gateway = await GatewayProcess.start(config)
    try:
        port = (await gateway.wait_for_event("listening"))["port"]
        ids = [await asyncio.to_thread(send, port, index) for index in range(3)]
        for _ in ids:
            await gateway.wait_for_event("deferred")
        listed = await queue_async(config, "list")
        assert listed.returncode == 0
        assert all(queue_id in listed.stdout for queue_id in ids)
        assert "3 messages" in listed.stdout

        held = await queue_async(config, "hold", ids[0])
        assert held.returncode == 0, held.stderr
        shown = json.loads((await queue_async(config, "--json", "show", ids[0])).stdout)
        assert shown["state"] == "hold"
        assert shown["hold"]["reason"] == "held by an administrator"
        assert shown["envelope"]["rcpt_tos"] == ["alice@contoso.com"]
        assert shown["attempts"][0]["status"] == 503

        assert (await queue_async(config, "delete", ids[1])).returncode == 0
        missing = await queue_async(config, "show", ids[1])
        assert missing.returncode == 1 and "no message" in missing.stderr

        emulator.set_faults(Faults())
        assert (await queue_async(config, "retry", "--all")).returncode == 0
        await wait_delivered(emulator, 1)  # ids[2], long before its 1 h backoff
        assert (await queue_async(config, "release", ids[0])).returncode == 0
        await wait_delivered(emulator, 2)
        subjects = sorted(m.mime.split(b"Message-ID: <")[1][:9] for m in emulator.delivered())
        assert subjects == [b"scan-0000", b"scan-0002"]
        refused = await queue_async(config, "release", ids[0])
        assert refused.returncode == 1

        gateway.process.send_signal(signal.SIGTERM)
        assert await gateway.wait_exit() == 0
    finally:
        gateway.kill()


def test_queue_commands_without_a_daemon(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.open()
    queue_id = spool.store(mail_from="a@contoso.com", rcpt_tos=("b@contoso.com",), message=MESSAGE,
                           client="c", peer="127.0.0.1", listener="lan")
    spool.close()
    document = {
        "smtp": {"listeners": [{"name": "lan", "port": 0}]},
        "tenants": [{"name": "c", "tenant_id": "t", "client_id": "i", "client_secret": "s",
                     "domains": ["contoso.com"]}],
        "spool": {"directory": str(tmp_path / "spool")},
    }
    config = write_config(tmp_path, document)
    assert queue(config, "hold", queue_id).returncode == 0
    assert "hold" in queue(config, "list", "--state", "hold").stdout
    purged = queue(config, "purge", "--held", "--older-than", "7d")
    assert "purged: 0 messages" in purged.stdout
    purged = queue(config, "purge", "--held")
    assert f"purged: 1 message ({queue_id})" in purged.stdout
    assert "0 messages" in queue(config, "list").stdout
