"""The connection to the database breaks after the COMMIT of a message reached the server and
before its answer came back. The message is queued; the client must hear `250`, or it sends
the message again and the recipients get two copies.

A TCP proxy between the gateway and PostgreSQL passes everything, except that the first time
the gateway sends a message's commit, it closes both connections as the server's answer
arrives (PostgreSQL answers an implicit transaction only after it committed it).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from psycopg import conninfo

from gateway.config import load_config
from gateway.emulator import Emulator
from tests.conftest import Logged
from tests.e2e.test_pipeline import MESSAGE
from tests.support.gateway import config_document, run_gateway, write_config
from tests.support.postgres import cluster_spool

COMMIT = b"WITH m AS (INSERT INTO sgg_messages"  # the one statement of a small message


class CuttingProxy:
    """127.0.0.1:`port` → the database; cuts the first connection that commits a message."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self.cut = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        armed = asyncio.Event()

        async def up() -> None:
            while data := await reader.read(65536):
                if COMMIT in data and not self.cut:
                    self.cut += 1
                    armed.set()
                upstream_writer.write(data)
                await upstream_writer.drain()

        async def down() -> None:
            while data := await upstream_reader.read(65536):
                if armed.is_set():  # the answer to the commit: it is lost
                    return
                writer.write(data)
                await writer.drain()

        try:
            pumps = [asyncio.create_task(up()), asyncio.create_task(down())]
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for pump in pumps:
                pump.cancel()
        finally:
            for each in (writer, upstream_writer):
                each.transport.abort()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._tasks.discard(task)


async def test_a_commit_whose_answer_was_lost_is_acknowledged_once(
    tmp_path: Path, emulator: Emulator, pg_dsn: str, logged: Logged
) -> None:
    parts = conninfo.conninfo_to_dict(pg_dsn)
    async with CuttingProxy(
        str(parts.get("host") or "127.0.0.1"), int(parts.get("port") or 5432)
    ) as proxy:
        dsn = conninfo.make_conninfo(pg_dsn, host="127.0.0.1", port=proxy.port)
        document = config_document(tmp_path, emulator, spool=cluster_spool(tmp_path, dsn))
        config = load_config(write_config(tmp_path, document))
        async with run_gateway(config) as gateway:
            refused = await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE)
            assert proxy.cut == 1  # the answer to the commit was lost
            assert refused == {}  # and the client heard 250
            delivered = await gateway.next_event(timeout=30)
            assert delivered.result == "delivered"
            await asyncio.sleep(1)
    assert len(emulator.delivered()) == 1
    [confirmed] = logged("commit_confirmed")
    assert confirmed["queue_id"] == delivered.queue_id
