"""Several gateway processes on one PostgreSQL queue, and a load that spreads over them.

A `Node` is one `smtp-graph-gateway serve` process with its own config (its own SMTP and HTTP
ports, kept across restarts, and its own node name), all pointed at the same database and the
same emulator. `ClusterLoad` sends one message per session, in turn to each node, like devices
behind a load balancer: a refused or broken session is retried (on the next node) with the same
Message-ID, as a device retries, and only `250` counts as acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import smtplib
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.gateway import config_document
from tests.support.load import load_message
from tests.support.ports import free_port
from tests.support.postgres import cluster_spool
from tests.support.process import GatewayProcess


@dataclass
class Node:
    """One gateway process of a cluster (started, killed, started again)."""

    name: str
    config: Path
    port: int
    http_port: int
    process: GatewayProcess | None = None
    runs: list[GatewayProcess] = field(default_factory=list)

    async def start(self, *, wait: str = "listening", timeout: float = 60) -> None:
        self.process = await GatewayProcess.start(self.config)
        self.runs.append(self.process)
        if wait:
            await self.process.wait_for_event(wait, timeout=timeout)

    async def kill(self) -> None:
        """SIGKILL: no drain, no lease given back."""
        assert self.process is not None
        self.process.kill()
        await self.process.wait_exit()

    async def stop(self) -> int:
        assert self.process is not None
        self.process.process.send_signal(signal.SIGTERM)
        return await self.process.wait_exit(60)

    def events(self, name: str) -> list[dict[str, Any]]:
        """Every log line `name` of every run of this node."""
        return [event for run in self.runs for event in run.events if event.get("event") == name]

    async def cleanup(self) -> None:
        """Kill every run still going and wait for it."""
        for run in self.runs:
            await run.reap()


def make_node(
    tmp_path: Path,
    emulator: Any,
    dsn: str,
    name: str,
    *,
    delivery: dict[str, Any] | None = None,
    **postgresql: Any,
) -> Node:
    """A node's config file under `tmp_path/name`, with fixed ports."""
    home = tmp_path / name
    home.mkdir(parents=True, exist_ok=True)
    port, http_port = free_port(), free_port()
    spool = cluster_spool(home, dsn, node=name, **postgresql)
    document = config_document(
        home,
        emulator,
        spool=spool,
        http={"listen": f"127.0.0.1:{http_port}"},
        delivery={
            "retry_initial": "1s",
            "retry_max": "2s",
            "concurrency": 4,
            "mailbox_rate": 0,
            **(delivery or {}),
        },
        shutdown={"drain_timeout": "5s"},
    )
    document["smtp"]["listeners"][0]["port"] = port
    config = home / "gateway.yaml"
    config.write_text(yaml.safe_dump(document))
    return Node(name, config, port, http_port)


@contextlib.asynccontextmanager
async def running_nodes(
    tmp_path: Path,
    emulator: Any,
    dsn: str,
    *,
    delivery: dict[str, Any] | None = None,
    names: tuple[str, ...] = ("node-a", "node-b"),
) -> AsyncIterator[list[Node]]:
    """Nodes on `dsn` with the same `delivery` settings, started; killed and waited for at the
    end, whatever the test did."""
    made = [make_node(tmp_path, emulator, dsn, name, delivery=delivery) for name in names]
    try:
        for node in made:
            await node.start()
        yield made
    finally:
        for node in made:
            await node.cleanup()


@dataclass
class ClusterLoad:
    """Senders that keep submitting until each has `per_sender` messages acknowledged (or
    `stop`), spreading sessions over `ports` and retrying what was not acknowledged."""

    ports: list[int]
    prefix: str
    senders: int = 4
    per_sender: int = 50
    sender: str = "scanner@contoso.com"
    acknowledged: dict[str, int] = field(default_factory=dict)  # Message-ID -> port
    refused: Counter[str] = field(default_factory=Counter)  # reply codes / errors seen
    stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _run(self, number: int) -> None:
        turn = number
        for index in range(self.per_sender):
            message_id = f"{self.prefix}-{number}-{index}@load.test"
            while not self.stop.is_set():
                port = self.ports[turn % len(self.ports)]
                turn += 1
                outcome = self._send(port, message_id)
                if outcome == "250":
                    with self._lock:
                        self.acknowledged[message_id] = port
                    break
                with self._lock:
                    self.refused[outcome] += 1
                time.sleep(0.05)  # a device waits a little before it tries again
            if self.stop.is_set():
                return

    def _send(self, port: int, message_id: str) -> str:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=15) as client:
                message = load_message(message_id, self.sender)
                client.sendmail(self.sender, ["alice@contoso.com"], message)
        except smtplib.SMTPResponseException as error:
            return str(error.smtp_code)
        except smtplib.SMTPRecipientsRefused as error:
            return str(next(iter(error.recipients.values()))[0])
        except (OSError, smtplib.SMTPException) as error:
            return type(error).__name__
        return "250"

    def start(self) -> ClusterLoad:
        self._threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(self.senders)
        ]
        for thread in self._threads:
            thread.start()
        return self

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    async def until(self, count: int, timeout: float = 120) -> None:
        """Wait until `count` messages are acknowledged (or the senders are done)."""
        async with asyncio.timeout(timeout):
            while len(self.acknowledged) < count and self.running:
                await asyncio.sleep(0.01)

    async def finish(self, timeout: float = 120) -> None:
        """Let the senders finish their messages."""
        for thread in self._threads:
            await asyncio.to_thread(thread.join, timeout)
        assert not self.running, "the senders did not finish"

    async def halt(self) -> None:
        self.stop.set()
        for thread in self._threads:
            await asyncio.to_thread(thread.join, 30)


async def wait_all_delivered(emulator: Any, wanted: set[str], timeout: float = 90) -> Counter[str]:
    """Wait until every Message-ID in `wanted` reached the emulator (or `timeout`); how often
    each Message-ID arrived."""
    from tests.support.crash import delivered_ids  # noqa: PLC0415 - a sibling helper

    with_deadline = time.monotonic() + timeout
    while time.monotonic() < with_deadline:
        if wanted <= set(delivered_ids(emulator)):
            break
        await asyncio.sleep(0.1)
    return delivered_ids(emulator)


def explain_missing(dsn: str, missing: set[str], nodes: list[Node]) -> str:
    """What became of acknowledged messages that were not delivered: each one's row in the
    queue (found by its Message-ID in its first chunk) and every node's log lines about it —
    so a failure says where the message stopped."""
    import psycopg  # noqa: PLC0415 - only when a test failed

    lines: list[str] = []
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as connection:
            for message_id in sorted(missing):
                rows = connection.execute(
                    "SELECT m.queue_id, m.state, m.leased_by,"
                    " extract(epoch FROM m.lease_until - now())::int AS lease_left,"
                    " extract(epoch FROM m.next_attempt - now())::int AS due_in,"
                    " m.attempts, m.hold_reason FROM sgg_messages m JOIN sgg_chunks c"
                    " ON c.queue_id = m.queue_id AND c.seq = 0"
                    " WHERE position(convert_to(%s, 'UTF8') in c.data) > 0",
                    (message_id,),
                ).fetchall()
                lines.append(f"{message_id}: rows {rows or 'none'}")
                for row in rows:
                    lines.extend(
                        f"  {node.name}: {event}"
                        for node in nodes
                        for run in node.runs
                        for event in run.events
                        if event.get("queue_id") == row[0]
                    )
    except psycopg.Error as error:
        lines.append(f"(the database could not be read: {error})")
    return "\n".join(lines)
