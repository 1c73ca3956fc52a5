"""The console's devices page against a running gateway: what devices sent and what was
refused, kept across a restart, and a silent device flagged on the page and in /metrics."""

from __future__ import annotations

import json
import smtplib
import time
from pathlib import Path

import pytest

from gateway.emulator import Emulator
from tests.support.console import Browser, console_section
from tests.support.gateway import make_config, run_gateway


async def test_devices_are_listed_and_kept_across_a_restart(
    tmp_path: Path, emulator: Emulator
) -> None:
    config = make_config(tmp_path, emulator, console=console_section())
    async with run_gateway(config) as running:
        assert running.gateway.console is not None
        await running.send("scanner@contoso.com", ["alice@contoso.com"], b"Subject: a\r\n\r\nx\r\n")
        await running.delivered(1)

        def refused_sender(client: smtplib.SMTP) -> int:
            client.ehlo()
            return client.mail("scanner@nowhere.example")[0]

        assert await running.session(refused_sender) == 550
        browser = Browser(f"http://127.0.0.1:{running.gateway.console.port}")
        try:
            assert await browser.sign_in("vera") == 303
            _, text, _ = await browser.get("/api/v1/devices")
            [device] = json.loads(text)["devices"]
            assert (device["address"], device["client"], device["today"]) == (
                "127.0.0.1",
                "loopback",
                1,
            )
            assert device["last_refusal"]["reply"] == 550
            assert device["last_refusal"]["reason"].startswith("MAIL: ")
            status, page, _ = await browser.get("/devices")
            assert status == 200 and "127.0.0.1" in page and "loopback" in page
            assert '<a href="/queue?device=127.0.0.1">127.0.0.1</a>' in page
        finally:
            await browser.close()
    async with run_gateway(config) as running:
        assert running.gateway.console is not None
        browser = Browser(f"http://127.0.0.1:{running.gateway.console.port}")
        try:
            assert await browser.sign_in("vera") == 303
            _, text, _ = await browser.get("/api/v1/devices")
            [device] = json.loads(text)["devices"]
            assert device["today"] == 1 and device["week"] == 1  # kept
        finally:
            await browser.close()


@pytest.mark.parametrize("silent", [True, False])
async def test_a_silent_device_is_flagged_on_the_page_and_in_metrics(
    tmp_path: Path, emulator: Emulator, silent: bool
) -> None:
    now = time.time()
    last = now - (3 * 86400 if silent else 3600)
    days = {time.strftime("%Y-%m-%d", time.gmtime(last - n * 86400)): 4 for n in range(5)}
    (tmp_path / "devices.json").write_text(
        json.dumps(
            {
                "devices": [
                    {
                        "address": "192.0.2.30",
                        "client": "printers",
                        "first_seen": last - 5 * 86400,
                        "last_seen": last,
                        "last_accepted": last,
                        "days": days,
                    }
                ]
            }
        )
    )
    config = make_config(
        tmp_path, emulator, console=console_section(), http={"listen": "127.0.0.1:0"}
    )
    async with run_gateway(config) as running:
        assert running.gateway.console is not None and running.gateway.health is not None
        browser = Browser(f"http://127.0.0.1:{running.gateway.console.port}")
        try:
            assert await browser.sign_in("vera") == 303
            _, page, _ = await browser.get("/devices")
            assert ('<span class="bad">silent</span>' in page) is silent
            _, page, _ = await browser.get("/")
            assert ("1 silent device" in page) is silent
        finally:
            await browser.close()
        scraper = Browser(f"http://127.0.0.1:{running.gateway.health.port}")
        try:
            _, metrics, _ = await scraper.get("/metrics")
        finally:
            await scraper.close()
        assert f"smtp_graph_gateway_devices_silent {1.0 if silent else 0.0}" in metrics
