"""Signals on the real process: SIGTERM drains a transaction in progress; a second one forces."""

from __future__ import annotations

import asyncio
import signal
import smtplib
import ssl
import threading
import time
from pathlib import Path

import trustme

from gateway.emulator import Emulator, Faults
from tests.e2e.test_pipeline import MESSAGE
from tests.support.gateway import config_document, make_config, run_gateway, write_config
from tests.support.process import GatewayProcess, SmtpDialogue


async def test_sigterm_during_data_finishes_the_transaction_then_exits(
    tmp_path: Path, emulator: Emulator
) -> None:
    config = write_config(tmp_path, config_document(tmp_path, emulator))
    gateway = await GatewayProcess.start(config)
    try:
        listening = await gateway.wait_for_event("listening")
        smtp = await SmtpDialogue.open("127.0.0.1", listening["port"])
        idle = await SmtpDialogue.open("127.0.0.1", listening["port"])
        assert (await smtp.command("EHLO printer.local")).startswith("250")
        assert (await smtp.command("MAIL FROM:<scanner@contoso.com>")).startswith("250")
        assert (await smtp.command("RCPT TO:<alice@contoso.com>")).startswith("250")
        assert (await smtp.command("RCPT TO:<bob@fabrikam.com>")).startswith("250")
        assert (await smtp.command("DATA")).startswith("354")
        stuffed = MESSAGE.replace(b"\r\n.", b"\r\n..")  # SMTP transparency (RFC 5321 4.5.2)
        half = len(stuffed) // 2
        await smtp.send_raw(stuffed[:half])

        gateway.process.send_signal(signal.SIGTERM)
        await gateway.wait_for_event("shutdown_requested")
        # The idle session is told to go away; the one in DATA is not.
        assert (await idle.reply()).startswith("421 4.3.2")
        assert gateway.process.returncode is None

        # Graph is down: the message accepted during the drain cannot be delivered now.
        emulator.set_faults(Faults(outage_seconds=120))
        await smtp.send_raw(stuffed[half:] + b".\r\n")
        accepted = await smtp.reply()
        assert accepted.startswith("250 2.0.0 queued as "), accepted
        assert (await smtp.reply()).startswith("421 4.3.2")
        assert await gateway.wait_exit() == 0
        await smtp.close()
        await idle.close()
    finally:
        gateway.kill()

    queue_id = accepted.split()[-1]
    assert (tmp_path / "spool" / "queue" / f"{queue_id}.msg").exists()
    assert emulator.delivered() == []
    # Graph is back: the next start delivers what the drain left queued.
    emulator.set_faults(Faults())
    async with run_gateway(make_config(tmp_path, emulator)) as restarted:
        [event] = await restarted.delivered(1)
    assert event.queue_id == queue_id
    assert emulator.delivered()[0].mime.endswith(MESSAGE)


async def test_second_signal_forces_exit_without_waiting_for_the_drain(
    tmp_path: Path, emulator: Emulator
) -> None:
    document = config_document(tmp_path, emulator, shutdown={"drain_timeout": "5m"})
    gateway = await GatewayProcess.start(write_config(tmp_path, document))
    try:
        listening = await gateway.wait_for_event("listening")
        smtp = await SmtpDialogue.open("127.0.0.1", listening["port"])
        assert (await smtp.command("EHLO printer.local")).startswith("250")
        assert (await smtp.command("MAIL FROM:<scanner@contoso.com>")).startswith("250")
        gateway.process.send_signal(signal.SIGTERM)
        await gateway.wait_for_event("shutdown_requested")
        gateway.process.send_signal(signal.SIGTERM)
        await gateway.wait_for_event("shutdown_forced")
        assert await gateway.wait_exit(timeout=10) == 0
        await smtp.close()
    finally:
        gateway.kill()


async def test_sigterm_closes_idle_sessions_at_once_tls_or_not(
    tmp_path: Path, emulator: Emulator
) -> None:
    """An idle STARTTLS session used to hold the drain for its whole timeout (the TLS close
    waited for a close_notify that a client not reading never sends), then log
    `smtp_drain_timeout` with `open_sessions: 0`."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "tls.crt"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "tls.key"))
    smtp = {
        "hostname": "gateway.test",
        "tls": {"cert_file": str(tmp_path / "tls.crt"), "key_file": str(tmp_path / "tls.key")},
        "listeners": [{"name": "lan", "address": "127.0.0.1", "port": 0, "tls": "starttls"}],
    }
    document = config_document(tmp_path, emulator, smtp=smtp, shutdown={"drain_timeout": "60s"})
    gateway = await GatewayProcess.start(write_config(tmp_path, document))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    ready, signalled = threading.Event(), threading.Event()

    def idle_session(tls: bool) -> str:
        """A client that says EHLO (and STARTTLS), then waits without reading, as smtplib
        does between messages; afterwards, the line the gateway sent meanwhile."""
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo()
            if tls:
                client.starttls(context=context)
                client.ehlo()
            ready.set()
            signalled.wait(30)
            return client.file.readline().decode().strip() if client.file else "<no file>"

    try:
        port = (await gateway.wait_for_event("listening"))["port"]
        over_tls = asyncio.create_task(asyncio.to_thread(idle_session, True))
        await asyncio.to_thread(ready.wait, 30)
        ready.clear()
        plain = asyncio.create_task(asyncio.to_thread(idle_session, False))
        await asyncio.to_thread(ready.wait, 30)

        started = time.monotonic()
        gateway.process.send_signal(signal.SIGTERM)
        assert await gateway.wait_exit(timeout=70) == 0
        took = time.monotonic() - started
        signalled.set()
        assert (await over_tls).startswith("421 4.3.2")
        assert (await plain).startswith("421 4.3.2")
    finally:
        signalled.set()
        gateway.kill()

    assert took < 10, f"shutdown took {took:.1f} s with idle sessions (drain_timeout 60 s)"
    names = [event.get("event") for event in gateway.events]
    assert "smtp_drain_timeout" not in names
