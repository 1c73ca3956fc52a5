"""Operations: metrics after a known sequence, readiness, SIGHUP reload, systemd notify, logs."""

from __future__ import annotations

import asyncio
import datetime
import io
import json
import re
import signal
import smtplib
import socket
from pathlib import Path

import aiohttp
import pytest
import yaml

from gateway.emulator import Emulator, EmulatorApp, EmulatorSettings, Faults, running_emulator
from gateway.observability.logging import configure_logging, flush_logs
from gateway.observability.metrics import METRIC_NAMES
from tests.e2e.test_pipeline import MESSAGE
from tests.support.gateway import SPOOL, config_document, make_config, run_gateway, write_config
from tests.support.load import Load
from tests.support.process import GatewayProcess

HTTP = {"listen": "127.0.0.1:0"}


async def get(gateway, path: str) -> tuple[int, str]:
    assert gateway.gateway.health is not None
    url = f"http://127.0.0.1:{gateway.gateway.health.port}{path}"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


def sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name} {labels}")


@pytest.mark.usefixtures("queue_backend")
async def test_metrics_after_a_known_sequence(tmp_path: Path, emulator: Emulator) -> None:
    async with run_gateway(make_config(tmp_path, emulator, http=HTTP)) as gateway:
        for _ in range(2):
            assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE) == {}
        with pytest.raises(Exception, match=r"5\.7\.1"):
            await gateway.send("x@unknown.example", ["alice@contoso.com"], MESSAGE)
        await gateway.delivered(2)
        status, text = await get(gateway, "/metrics")
    assert status == 200
    prefix = "smtp_graph_gateway_"
    assert sample(text, prefix + "smtp_transactions_total", listener="lan", result="queued") == 2
    assert sample(text, prefix + "smtp_transactions_total", listener="lan", result="refused") == 1
    assert sample(text, prefix + "smtp_connections_total", result="accepted") == 3
    assert sample(text, prefix + "smtp_received_bytes_total", listener="lan") == 2 * len(MESSAGE)
    assert (
        sample(text, prefix + "delivery_attempts_total", tenant="contoso", outcome="delivered") == 2
    )
    assert sample(text, prefix + "graph_request_duration_seconds_count", tenant="contoso") == 2
    assert sample(text, prefix + "token_requests_total", tenant="contoso", result="ok") == 1
    assert sample(text, prefix + "queue_messages", state="queue") == 0
    ready = "queue" if SPOOL.get() else "spool_writable"  # the database, or the spool's disk
    assert sample(text, prefix + "ready", check=ready) == 1
    assert sample(text, prefix + "delivery_in_flight") == 0
    # Every name the dashboard and alert rules may use is served.
    families = set(re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE))
    assert set(METRIC_NAMES) <= families


async def test_readiness_flips_with_spool_and_credentials(tmp_path: Path) -> None:
    app = EmulatorApp(tenant_id="contoso-tenant", client_id="contoso-app", client_secret="other")
    settings = EmulatorSettings(state_dir=tmp_path / "emu", apps=(app,))
    async with (
        running_emulator(settings) as emulator,
        run_gateway(make_config(tmp_path, emulator, http=HTTP)) as gateway,
    ):
        status, body = await get(gateway, "/readyz")
        assert status == 200 and json.loads(body)["status"] == "ready"
        # The configured secret is wrong: the first delivery fails to get a token.
        assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE) == {}
        assert (await gateway.next_event()).result == "deferred"
        status, body = await get(gateway, "/readyz")
        assert status == 503
        assert json.loads(body)["checks"]["tenant:contoso"] is False
        tmp = tmp_path / "spool" / "tmp"
        tmp.rmdir()
        tmp.write_text("in the way")
        status, body = await get(gateway, "/readyz")
        assert json.loads(body)["checks"]["spool_writable"] is False
        assert (await get(gateway, "/healthz"))[0] == 200


class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)

    async def expect(self, key: str, timeout: float = 20) -> list[str]:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while True:
                message = (await loop.sock_recv(self.sock, 4096)).decode()
                if key in message.splitlines() or any(
                    line.startswith(key) for line in message.splitlines()
                ):
                    return message.splitlines()


async def test_sighup_reload_and_systemd_notifications(
    tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    notify = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify.path))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    document = config_document(tmp_path, emulator, delivery={"mailbox_rate": 0})
    config = write_config(tmp_path, document)
    gateway = await GatewayProcess.start(config)
    try:
        port = (await gateway.wait_for_event("listening"))["port"]
        await notify.expect("READY=1")
        await notify.expect("WATCHDOG=1")

        def send(sender: str) -> tuple[int, bytes]:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                client.ehlo()
                return client.mail(sender)

        assert (await asyncio.to_thread(send, "a@fabrikam.com"))[0] == 550
        load = Load(port=port, prefix="reload", senders=4, per_sender=40)
        threads = load.start()  # mail keeps flowing through both reloads
        # A valid change: the tenant now serves fabrikam.com too.
        document["tenants"][0]["domains"].append("fabrikam.com")
        config.write_text(yaml.safe_dump(document))
        gateway.process.send_signal(signal.SIGHUP)
        await notify.expect("RELOADING=1")
        reloaded = await gateway.wait_for_event("reloaded")
        assert reloaded["needs_restart"] is None
        await notify.expect("READY=1")
        assert (await asyncio.to_thread(send, "a@fabrikam.com"))[0] == 250
        # An invalid change is refused and the running configuration stays.
        config.write_text("smtp: {listeners: []}\ntenants: nope\n")
        gateway.process.send_signal(signal.SIGHUP)
        failed = await gateway.wait_for_event("reload_failed")
        assert any("tenants" in error for error in failed["errors"])
        await notify.expect("READY=1")
        assert (await asyncio.to_thread(send, "a@fabrikam.com"))[0] == 250
        # No tenant at all would refuse every MAIL; a file that is not UTF-8 used to end the
        # reload task with an exception and no READY=1 (systemd would wait forever).
        for broken, why in (
            (yaml.safe_dump({**document, "tenants": []}).encode(), "tenant"),
            (yaml.safe_dump(document).encode() + b"# caf\xe9\n", "UTF-8"),
        ):
            config.write_bytes(broken)
            gateway.process.send_signal(signal.SIGHUP)
            await notify.expect("RELOADING=1")
            failed = await gateway.wait_for_event("reload_failed")
            assert any(why in error for error in failed["errors"]), failed
            ready = await notify.expect("READY=1")
            assert any("reload failed" in line for line in ready)
            assert (await asyncio.to_thread(send, "a@fabrikam.com"))[0] == 250
        for thread in threads:
            await asyncio.to_thread(thread.join, 60)
        assert load.failures == 0 and len(load.acknowledged) == 160
        await emulator.wait_delivered(160, timeout=60)
        delivered = {
            m.mime.split(b"Message-ID: <")[1].split(b">")[0].decode() for m in emulator.delivered()
        }
        assert set(load.acknowledged) <= delivered
        gateway.process.send_signal(signal.SIGTERM)
        await notify.expect("STOPPING=1")
        assert await gateway.wait_exit() == 0
    finally:
        gateway.kill()
        notify.sock.close()


async def test_debug_logs_are_structured_and_hold_no_secret_or_body(
    tmp_path: Path, emulator: Emulator
) -> None:
    stream = io.StringIO()
    configure_logging("debug", "json", stream=stream)
    body = MESSAGE.replace(b"Your scan is attached.", b"BODY-MARKER-7731")
    config = make_config(tmp_path, emulator)
    async with run_gateway(config) as gateway:
        assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], body) == {}
        await gateway.delivered(1)
        provider = gateway.gateway._tokens.for_tenant(config.tenants[0])
        token = await provider.get()
    assert flush_logs()
    text = stream.getvalue()
    events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    transaction = next(e for e in events if e.get("event") == "transaction")
    assert transaction["result"] == "queued" and transaction["size"] == len(body)
    delivered = next(e for e in events if e.get("event") == "delivered")
    assert {"queue_id", "tenant", "mailbox", "status", "request_id", "duration_ms"} <= set(
        delivered
    )
    for forbidden in ("contoso-secret", token, "BODY-MARKER-7731"):
        assert forbidden not in text


async def test_a_deferred_message_logs_its_next_attempt_as_an_iso_time(
    tmp_path: Path, emulator: Emulator, logged
) -> None:
    emulator.set_faults(Faults(outage_seconds=1.5))
    delivery = {"retry_initial": "1s", "retry_max": "2s", "concurrency": 2}
    async with run_gateway(make_config(tmp_path, emulator, delivery=delivery)) as gateway:
        before = datetime.datetime.now(datetime.UTC)
        assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE) == {}
        await gateway.delivered(1, timeout=30)
    deferred = logged("deferred")
    assert deferred
    for line in deferred:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", line["next_attempt"]), line
        moment = datetime.datetime.fromisoformat(line["next_attempt"])
        assert before - datetime.timedelta(seconds=1) <= moment
        assert moment <= before + datetime.timedelta(seconds=30)
