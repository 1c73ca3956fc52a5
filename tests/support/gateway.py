"""Run the whole gateway in the test's event loop, configured against a running emulator."""

from __future__ import annotations

import asyncio
import contextvars
import smtplib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import yaml

from gateway.app import Gateway
from gateway.config import Config, load_config
from gateway.delivery.engine import DeliveryEvent
from gateway.queue.model import Arrival

# The `spool` section gateways get when a test does not give one (see the `queue_backend`
# fixture: the file spool, or a cluster's database).
SPOOL: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("SPOOL", default=None)


def config_document(tmp_path: Path, emulator: Any, **sections: Any) -> dict[str, Any]:
    """A gateway config for tests: one loopback listener on a free port, one tenant."""
    document: dict[str, Any] = {
        "smtp": {
            "hostname": "gateway.test",
            "listeners": [{"name": "lan", "address": "127.0.0.1", "port": 0}],
        },
        "tenants": [
            {
                "name": "contoso",
                "tenant_id": "contoso-tenant",
                "client_id": "contoso-app",
                "client_secret": "contoso-secret",
                "domains": ["contoso.com", "*.contoso.com"],
                "login_endpoint": emulator.login_endpoint,
                "graph_endpoint": emulator.graph_endpoint,
                "ca_file": str(emulator.ca_file),
            }
        ],
        "spool": SPOOL.get() or {"directory": str(tmp_path / "spool")},
        "delivery": {"retry_initial": "1s", "retry_max": "2s", "concurrency": 4},
        "shutdown": {"drain_timeout": "5s"},
    }
    for key, value in sections.items():
        document[key] = value
    return document


def write_config(tmp_path: Path, document: dict[str, Any]) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def make_config(tmp_path: Path, emulator: Any, **sections: Any) -> Config:
    """Write the YAML to a file and load it through the real loader."""
    return load_config(write_config(tmp_path, config_document(tmp_path, emulator, **sections)))


class Running:
    """A started gateway, with helpers to talk to it and wait for deliveries."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        # Clients get their own threads: the gateway's spool writes use the default executor,
        # and blocked clients must not starve the server they are waiting for.
        self.clients = ThreadPoolExecutor(max_workers=32, thread_name_prefix="smtp-client")
        self.events: asyncio.Queue[DeliveryEvent] = asyncio.Queue()
        assert gateway.engine is not None
        gateway.engine.observers.append(self.events.put_nowait)

    @property
    def smtp_address(self) -> tuple[str, int]:
        assert self.gateway.listeners is not None
        return self.gateway.listeners.bound[0].host, self.gateway.listeners.bound[0].port

    async def send(self, sender: str, recipients: list[str], message: bytes) -> dict[str, Any]:
        """Send with smtplib (in a thread); returns smtplib's refused-recipients dict."""
        host, port = self.smtp_address

        def transaction() -> dict[str, Any]:
            with smtplib.SMTP(host, port, timeout=30) as client:
                return client.sendmail(sender, recipients, message)

        return await asyncio.get_running_loop().run_in_executor(self.clients, transaction)

    async def session(self, dialogue: Callable[[smtplib.SMTP], Any]) -> Any:
        """Run `dialogue(client)` on a fresh smtplib connection in a thread (the gateway shares
        this event loop, so the client must not block it)."""
        host, port = self.smtp_address

        def run() -> Any:
            with smtplib.SMTP(host, port, timeout=30) as client:
                return dialogue(client)

        return await asyncio.get_running_loop().run_in_executor(self.clients, run)

    async def next_event(
        self, timeout: float = 20.0, accept: Callable[[DeliveryEvent], bool] = lambda e: True
    ) -> DeliveryEvent:
        """The next delivery event that `accept`s (waits on the engine's events)."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self.events.get()
                if accept(event):
                    return event

    async def delivered(self, count: int, timeout: float = 20.0) -> list[DeliveryEvent]:
        """Wait for `count` delivered events."""
        return [
            await self.next_event(timeout, lambda e: e.result == "delivered") for _ in range(count)
        ]


@asynccontextmanager
async def run_gateway(config: Config) -> AsyncIterator[Running]:
    """Start the whole daemon (listeners, spool, workers) and shut it down afterwards."""
    gateway = Gateway(config)
    await gateway.startup()
    running = Running(gateway)
    try:
        yield running
    finally:
        await gateway.shutdown()
        running.clients.shutdown(wait=True)


def arrival(mail_from: str = "scanner@contoso.com", *rcpt_tos: str, **facts: Any) -> Arrival:
    """A message as a device on the LAN listener hands it over from loopback, for tests that
    put mail in a queue directly (`facts`: another client, peer, listener…)."""
    return Arrival(
        **{
            "mail_from": mail_from,
            "rcpt_tos": rcpt_tos or ("alice@contoso.com",),
            "client": "loopback",
            "peer": "127.0.0.1",
            "listener": "lan",
            **facts,
        }
    )
