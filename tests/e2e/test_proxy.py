"""The `proxy` key sends both Entra ID (msal) and Graph (aiohttp) traffic through the proxy."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from gateway.emulator import Emulator
from tests.e2e.test_pipeline import MESSAGE
from tests.support.gateway import make_config, run_gateway


class ConnectProxy:
    """A minimal HTTP CONNECT proxy on 127.0.0.1 that counts its tunnels."""

    def __init__(self) -> None:
        self.tunnels: list[str] = []
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> ConnectProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._pipes:
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        request = await reader.readuntil(b"\r\n\r\n")
        method, target, _ = request.split(b"\r\n", 1)[0].decode().split(" ", 2)
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            writer.close()
            return
        host, port = target.rsplit(":", 1)
        self.tunnels.append(target)
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        self._writers.append(upstream_writer)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        for source, sink in ((reader, upstream_writer), (upstream_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.close()


async def test_proxy_key_carries_token_and_graph_requests(
    tmp_path: Path, emulator: Emulator
) -> None:
    async with ConnectProxy() as proxy:
        config = make_config(tmp_path, emulator, proxy=proxy.url)
        async with run_gateway(config) as gateway:
            assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE) == {}
            await gateway.delivered(1)
        emulator_target = emulator.base_url.removeprefix("https://")
        # msal (discovery + token) and aiohttp (sendMail) each opened at least one tunnel.
        assert len(proxy.tunnels) >= 2
        assert set(proxy.tunnels) == {emulator_target}
    assert len(emulator.delivered()) == 1
