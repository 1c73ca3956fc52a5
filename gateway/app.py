"""The composition root: build every component from the config and run their lifecycle.

`Gateway.startup()` opens the spool (recovering whatever a crash left), starts the delivery
workers, the health endpoint and the SMTP listeners; `serve()` waits for a shutdown request;
`shutdown()` drains: stop accepting, let SMTP transactions and Graph calls under way finish
within `shutdown.drain_timeout`, leave everything else queued for the next start.
`run(config)` adds the signal handling: the first SIGTERM/SIGINT drains, a second one forces.
"""

from __future__ import annotations

import asyncio
import datetime
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import structlog

from gateway.config import Config, Tenant, format_size, load_config
from gateway.control import ControlServer
from gateway.delivery.engine import DeliveryEngine
from gateway.errors import ConfigError
from gateway.graph.client import GraphClient
from gateway.graph.credentials import msal_client_credential
from gateway.graph.delegated import provider_for
from gateway.graph.tokens import TokenProviders
from gateway.observability.health import HealthServer
from gateway.observability.metrics import Metrics
from gateway.observability.status import Status, warn_expiring
from gateway.observability.systemd import Notifier
from gateway.routing import Router, advertised_size
from gateway.smtp.handler import Handler, PolicyState
from gateway.smtp.listeners import Listeners
from gateway.spool import Envelope, Spool
from gateway.spool.admin import Listener, QueueAdmin

log = structlog.get_logger("gateway")


def check_certificates(tenants: tuple[Tenant, ...]) -> None:
    """Load every tenant's certificate now, so a wrong password or file stops the start."""
    for index, tenant in enumerate(tenants):
        if tenant.certificate is not None:
            msal_client_credential(tenant.certificate, where=f"tenants[{index}].certificate")


class Gateway:
    """One running gateway."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._state = PolicyState(config, Router(config.tenants, config.routing))
        self.spool = Spool(config.spool.directory)
        self._session: aiohttp.ClientSession | None = None
        self._tokens: TokenProviders | None = None
        self._control: ControlServer | None = None
        # Separate threads for spool I/O: the accept path never waits behind delivery's.
        self._accept_io = ThreadPoolExecutor(max_workers=16, thread_name_prefix="accept-io")
        self._delivery_io = ThreadPoolExecutor(max_workers=8, thread_name_prefix="delivery-io")
        self.metrics = Metrics()
        self.status = Status(
            self.spool,
            self.metrics,
            lambda: self._state.config.tenants,
            lambda: self.listeners is not None and bool(self.listeners.bound),
        )
        self.metrics.watch(self.status.scrape)
        self.engine: DeliveryEngine | None = None
        self.listeners: Listeners | None = None
        self.health: HealthServer | None = None
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._started = False

    async def startup(self) -> None:
        """Open the spool, start delivery, health endpoint and listeners (in that order)."""
        await asyncio.to_thread(check_certificates, self.config.tenants)
        await asyncio.to_thread(self.spool.open)
        try:
            queued = await asyncio.to_thread(self.spool.recover)
            self._session = aiohttp.ClientSession()
            self._tokens = TokenProviders(
                self.config.tenants,
                timeout=self.config.delivery.token_timeout,
                on_result=self.status.token_result,
                proxy=self.config.proxy,
                factory=provider_for,
            )
            graph = GraphClient(
                self._session,
                timeout=self.config.delivery.request_timeout,
                proxy=self.config.proxy,
            )
            await asyncio.to_thread(graph.prepare, {t.ca_file for t in self.config.tenants})
            self.engine = DeliveryEngine(
                spool=self.spool,
                router=lambda: self._state.router,
                tokens=self._tokens,
                graph=graph,
                settings=self.config.delivery,
                hostname=self.config.smtp.hostname or socket.getfqdn(),
                executor=self._delivery_io,
                identity=self._identity,
            )
            self.engine.observers.append(self.status.delivery_event)
            self.status.watch_delivery(self.engine.gauges)
            now = time.time()
            for found in queued:
                self.engine.submit(
                    found.queue_id, max(0.0, found.next_attempt - now), size=found.size
                )
            self.engine.start()
            self._control = ControlServer(self.spool.directory, self._queue_admin(self.engine))
            await self._control.start()
            if self.config.http is not None:
                self.health = HealthServer(
                    self.config.http.address,
                    self.config.http.port,
                    self.status.readiness,
                    self.metrics.render,
                    self.status.problems,
                )
                await self.health.start()
            handler = Handler(
                state=lambda: self._state,
                spool=self.spool,
                on_queued=self.engine.submit,
                capacity=self._capacity_problem,
                executor=self._accept_io,
                metrics=self.metrics,
            )
            self.listeners = Listeners(
                self.config.smtp,
                handler,
                advertised_size(self.config.smtp, self.config.tenants, self.config.routing),
            )
            await self.listeners.start()
        except BaseException:
            await self._close()
            raise
        self._started = True
        warn_expiring(self.config.tenants, datetime.datetime.now(datetime.UTC).date())
        log.info(
            "started",
            listeners=len(self.listeners.bound),
            recovered=len(queued),
            tenants=[tenant.name for tenant in self.config.tenants],
        )

    def _identity(self, envelope: Envelope) -> tuple[str, bool]:
        """(send_as, reply_to_sender) of the user or client (by name, in the current config)
        that sent a message."""
        config = self._state.config
        found = (
            next((u for u in config.users if u.username == envelope.user), None)
            if envelope.user
            else next((c for c in config.clients if c.name == envelope.client), None)
        )
        return (found.send_as, found.reply_to_sender) if found else ("", True)

    def _queue_admin(self, engine: DeliveryEngine) -> QueueAdmin:
        """Queue commands run in a thread; they tell the engine through the event loop."""
        loop = asyncio.get_running_loop()
        return QueueAdmin(
            self.spool,
            Listener(
                queued=lambda queue_id: loop.call_soon_threadsafe(engine.submit, queue_id),
                removed=lambda queue_id: loop.call_soon_threadsafe(engine.forget, queue_id),
            ),
        )

    def _capacity_problem(self) -> str | None:
        """Why new mail cannot be taken right now (queue too deep, disk too full), or None."""
        settings = self.config.spool
        if self.engine is not None and self.engine.depth >= settings.max_messages:
            return f"{self.engine.depth} messages queued (spool.max_messages)"
        try:
            free = self.spool.free_bytes()
        except OSError:
            return "the spool's file system cannot be read"
        if free < settings.min_free_space:
            return f"only {format_size(free)} free in the spool (spool.min_free_space)"
        return None

    async def reload(self) -> bool:
        """Re-read and validate the config file; switch to it only if it is valid.

        Clients, users, tenants, routes, credentials, limits and TLS certificates take effect
        at once for new connections and deliveries; open sessions and queued mail are untouched.
        Changes that need new sockets or a new spool are logged as needing a restart.
        """
        if self.config.source is None:
            log.warning("reload_skipped", reason="the configuration did not come from a file")
            return False
        try:
            new = await asyncio.to_thread(load_config, self.config.source)
            await asyncio.to_thread(check_certificates, new.tenants)
            size = advertised_size(new.smtp, new.tenants, new.routing)
            restart = self.listeners.reload(new.smtp, size) if self.listeners else []
        except ConfigError as error:
            log.error(
                "reload_failed",
                errors=[str(issue) for issue in error.issues],
                action="the previous configuration stays in force; fix the file and reload again",
            )
            return False
        if self.engine is not None:
            restart += self.engine.update_settings(new.delivery)
        for key in ("spool", "http", "drain_timeout"):
            if getattr(new, key) != getattr(self.config, key):
                restart.append(key)
        self._state = PolicyState(new, Router(new.tenants, new.routing))
        self.config = new
        warn_expiring(new.tenants, datetime.datetime.now(datetime.UTC).date())
        log.info(
            "reloaded",
            source=str(new.source),
            tenants=[t.name for t in new.tenants],
            needs_restart=restart or None,
        )
        return True

    async def serve(self) -> None:
        """Run until a shutdown is requested."""
        await self._stop.wait()

    def request_shutdown(self) -> None:
        """First call: drain gracefully. Second call: stop waiting for the drain."""
        if self._stop.is_set():
            log.warning("shutdown_forced")
            self._force.set()
        else:
            log.info("shutdown_requested", drain_timeout=self.config.drain_timeout)
            self._stop.set()

    async def shutdown(self) -> None:
        """Drain and close everything; safe to call after a failed or partial start."""
        self._stop.set()
        deadline = time.monotonic() + self.config.drain_timeout
        drain = asyncio.create_task(self._drain(deadline))
        forced = asyncio.create_task(self._force.wait())
        done, _pending = await asyncio.wait({drain, forced}, return_when=asyncio.FIRST_COMPLETED)
        forced.cancel()
        if drain not in done:
            drain.cancel()
            await asyncio.gather(drain, return_exceptions=True)
            if self.listeners is not None:
                self.listeners.registry.abort_all()
        await self._close()
        log.info("stopped", queued=self.spool.count("queue") if self._started else None)

    async def _drain(self, deadline: float) -> None:
        if self.listeners is not None:
            await self.listeners.drain(max(0.0, deadline - time.monotonic()))
        if self.engine is not None:
            await self.engine.drain(max(0.0, deadline - time.monotonic()))

    async def _close(self) -> None:
        if self.listeners is not None:
            self.listeners.close()
        if self.engine is not None:
            await self.engine.drain(0)
        if self._control is not None:
            await self._control.stop()
            self._control = None
        if self.health is not None:
            await self.health.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._tokens is not None:
            await asyncio.to_thread(self._tokens.close)
        self._accept_io.shutdown(wait=False, cancel_futures=False)
        self._delivery_io.shutdown(wait=False, cancel_futures=False)
        self.spool.close()


async def run(config: Config) -> None:
    """Run a gateway until SIGTERM or SIGINT, then drain (a second signal forces the stop).

    SIGHUP reloads the configuration. Under systemd (`Type=notify`) the service manager hears
    READY, RELOADING, STOPPING and watchdog pings.
    """
    gateway = Gateway(config)
    notifier = Notifier()
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[None]] = set()

    async def reload() -> None:
        notifier.reloading()
        await gateway.reload()
        notifier.send(READY=1, STATUS="serving")

    def on_hangup() -> None:
        task = loop.create_task(reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    # Handlers stay installed through shutdown: a second signal forces it instead of
    # killing the process in the middle of a spool write.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, gateway.request_shutdown)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    watchdog = loop.create_task(notifier.watchdog())
    try:
        await gateway.startup()
        notifier.send(READY=1, STATUS="serving")
        await gateway.serve()
    finally:
        notifier.send(STOPPING=1, STATUS="draining")
        loop.remove_signal_handler(signal.SIGHUP)
        try:
            await gateway.shutdown()
        finally:
            watchdog.cancel()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
