"""The HTTP endpoint: `/healthz` (alive), `/readyz` (can take mail), `/metrics` (Prometheus).

Served by aiohttp's AppRunner on the application's own loop. `/readyz` answers 503 with a JSON
body naming what is wrong, for systemd, Docker and Kubernetes probes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.errors import ConfigError
from gateway.network import bind_issue

ReadinessCheck = Callable[[], dict[str, bool]]


class HealthServer:
    """`/healthz` and `/readyz` on one address."""

    def __init__(
        self,
        host: str,
        port: int,
        readiness: ReadinessCheck,
        metrics: Callable[[], Awaitable[bytes]] | None = None,
        problems: Callable[[], dict[str, str]] = dict,
    ) -> None:
        self._problems = problems
        self._metrics = metrics
        self._host = host
        self._port = port
        self._readiness = readiness
        self._runner: web.AppRunner | None = None
        self.port = port

    async def start(self) -> None:
        """Bind and serve; `ConfigError` naming `http.listen` when the address cannot be bound."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        if self._metrics is not None:
            app.router.add_get("/metrics", self._render_metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        try:
            await site.start()
        except OSError as error:
            await self._runner.cleanup()
            self._runner = None
            raise ConfigError([bind_issue(error, "http.listen", self._host, self._port)]) from None
        addresses = self._runner.addresses
        if addresses:
            self.port = int(addresses[0][1])

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def _render_metrics(self, _request: web.Request) -> web.Response:
        assert self._metrics is not None
        body = await self._metrics()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _readyz(self, _request: web.Request) -> web.Response:
        checks = self._readiness()
        ready = all(checks.values())
        body: dict[str, object] = {"status": "ready" if ready else "not ready", "checks": checks}
        problems = {name: why for name, why in self._problems().items() if not checks.get(name)}
        if problems:
            body["problems"] = problems  # what to do, e.g. "run `… login NAME` again"
        return web.json_response(body, status=200 if ready else 503)
