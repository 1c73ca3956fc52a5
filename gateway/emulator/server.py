"""The `Emulator`: Entra ID and Graph mail on one HTTPS listener inside the caller's event loop.

    async with running_emulator(EmulatorSettings(state_dir=tmp)) as emu:
        authority = f"{emu.login_endpoint}/{tenant_id}"   # for msal, with emu.ca_file trusted
        graph = emu.graph_endpoint                         # https://127.0.0.1:PORT/v1.0
        ... emu.delivered(), emu.stats, emu.set_faults(Faults(throttle_count=2))

`start()` makes a fresh CA and server certificate, writes the CA PEM to `state_dir/ca.pem` (and
to `ca_out`), binds (port 0 picks a free port) and serves until `stop()`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType

from aiohttp import web

from gateway.emulator.admin import AdminRoutes
from gateway.emulator.faults import Faults
from gateway.emulator.graph import GraphRoutes, graph_middleware
from gateway.emulator.login import LoginRoutes
from gateway.emulator.outbox import DeliveredMessage
from gateway.emulator.pki import generate_pki, server_ssl_context, subject_names
from gateway.emulator.settings import EmulatorSettings
from gateway.emulator.state import EmulatorState
from gateway.emulator.stats import EmulatorStats
from gateway.emulator.uploads import UploadRoutes

SHUTDOWN_TIMEOUT = 2.0  # seconds to let in-flight requests finish on stop()


class Emulator:
    def __init__(self, settings: EmulatorSettings) -> None:
        self.settings = settings
        self.state = EmulatorState(settings)
        self._runner: web.AppRunner | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("the emulator is already running")
        settings = self.settings
        pki = generate_pki(subject_names(settings.host))
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.outbox_dir.mkdir(parents=True, exist_ok=True)
        self.ca_file.write_bytes(pki.ca_cert_pem)
        if settings.ca_out is not None:
            settings.ca_out.parent.mkdir(parents=True, exist_ok=True)
            settings.ca_out.write_bytes(pki.ca_cert_pem)
        ssl_context = server_ssl_context(pki, settings.state_dir)

        app = web.Application(middlewares=[graph_middleware(self.state)])
        for routes in (
            LoginRoutes(self.state),
            GraphRoutes(self.state),
            UploadRoutes(self.state),
            AdminRoutes(self.state),
        ):
            routes.register(app.router)
        runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        try:
            site = web.TCPSite(
                runner, settings.host.strip("[]"), settings.port, ssl_context=ssl_context
            )
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        port = int(runner.addresses[0][1])
        self.state.base_url = f"https://{_url_host(settings.host)}:{port}"
        self.state.log.info(
            "emulator.started",
            base_url=self.base_url,
            ca_file=str(self.ca_file),
            outbox=str(self.outbox_dir),
            open_mode=settings.open_mode,
        )

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            self.state.log.info("emulator.stopped", base_url=self.base_url)

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- where things are ------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if not self.state.base_url:
            raise RuntimeError("the emulator is not started")
        return self.state.base_url

    @property
    def login_endpoint(self) -> str:
        """The authority host: msal's authority is f"{login_endpoint}/{tenant_id}"."""
        return self.base_url

    @property
    def graph_endpoint(self) -> str:
        return f"{self.base_url}/v1.0"

    @property
    def ca_file(self) -> Path:
        return self.settings.state_dir / "ca.pem"

    @property
    def outbox_dir(self) -> Path:
        return self.state.outbox.directory

    # -- what happened, and what should go wrong -------------------------------------------

    def delivered(self) -> list[DeliveredMessage]:
        return self.state.outbox.messages()

    @property
    def stats(self) -> EmulatorStats:
        return self.state.stats

    @property
    def faults(self) -> Faults:
        return self.state.faults.faults

    def set_faults(self, faults: Faults) -> None:
        self.state.set_faults(faults)

    def reset(self) -> None:
        self.state.reset()


@asynccontextmanager
async def running_emulator(settings: EmulatorSettings) -> AsyncIterator[Emulator]:
    emulator = Emulator(settings)
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


def _url_host(host: str) -> str:
    """The host to put in URLs: wildcard binds are reached over loopback; IPv6 in brackets."""
    bare = host.strip("[]")
    if bare in ("", "0.0.0.0"):  # noqa: S104 - comparing, not binding
        return "127.0.0.1"
    if bare == "::":
        return "[::1]"
    try:
        if ipaddress.ip_address(bare).version == 6:
            return f"[{bare}]"
    except ValueError:
        pass
    return bare
