"""The composition root: build every component from the config and run their lifecycle.

`Gateway.startup()` opens the spool (recovering whatever a crash left), starts the delivery
workers, the health endpoint and the SMTP listeners; `serve()` waits for a shutdown request;
`shutdown()` drains: stop accepting, let SMTP transactions and Graph calls under way finish
within `shutdown.drain_timeout`, leave everything else queued for the next start.
`run(config)` adds the signal handling: the first SIGTERM/SIGINT drains, a second one forces.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import structlog

from gateway.config import Config, Tenant, Transport, load_config
from gateway.console import Authenticator, ConsoleServer, ConsoleService, Context, Sessions
from gateway.console.testmail import TestMail
from gateway.control import ControlServer
from gateway.delivery.engine import DeliveryEngine
from gateway.delivery.job import Admission
from gateway.entra.console_signin import ConsoleSignIn
from gateway.entra.credentials import msal_client_credential
from gateway.entra.delegated import provider_for
from gateway.entra.tokens import TokenProviders
from gateway.errors import ConfigError
from gateway.graph.client import GraphClient
from gateway.graph.transport import GraphTransport
from gateway.observability.activity import Activity
from gateway.observability.devices import NO_DEVICES, DeviceRegistry
from gateway.observability.health import HealthServer
from gateway.observability.logging import add_log_fields
from gateway.observability.metrics import Metrics
from gateway.observability.status import Status, warn_config, warn_expiring
from gateway.observability.systemd import Notifier
from gateway.pgqueue.dispatch import ClusterAdmission
from gateway.pgqueue.queue import PgQueue
from gateway.queue.admin import Listener, QueueAdmin
from gateway.queues import build_queue
from gateway.routing import Route, advertised_size, router_for, size_cap_reason
from gateway.smtp.handler import Handler, PolicyState
from gateway.smtp.listeners import Listeners
from gateway.smtp.tls import server_context
from gateway.smtp_oauth.transport import SmtpOAuthTransport
from gateway.spool import FileQueue, Spool
from gateway.transport import Transport as TransportProtocol

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
        self._state = PolicyState(config, router_for(config))
        self._session: aiohttp.ClientSession | None = None
        self._tokens: TokenProviders | None = None
        self._control: ControlServer | None = None
        # Separate threads for queue I/O: the accept path never waits behind delivery's.
        self._accept_io = ThreadPoolExecutor(max_workers=16, thread_name_prefix="accept-io")
        self._delivery_io = ThreadPoolExecutor(max_workers=8, thread_name_prefix="delivery-io")
        self.queue = build_queue(
            config.spool, accept_executor=self._accept_io, delivery_executor=self._delivery_io
        )
        self.spool: Spool | None = None  # the file spool, when that is the queue
        self._admission: Admission | None = None
        if isinstance(self.queue, PgQueue):
            self._admission = ClusterAdmission(self.queue, config.delivery)
            add_log_fields(node=self.queue.node_name)
        elif isinstance(self.queue, FileQueue):
            self.spool = self.queue.spool
        self.metrics = Metrics()
        self.status = Status(
            self.queue,
            self.metrics,
            lambda: self._state.config.tenants,
            lambda: self.listeners is not None and bool(self.listeners.bound),
        )
        self.engine: DeliveryEngine | None = None
        self.listeners: Listeners | None = None
        self.health: HealthServer | None = None
        self.console: ConsoleServer | None = None
        self._console_signin: ConsoleSignIn | None = None
        # Which devices send, kept beside the spool (the console shows them).
        self.devices: DeviceRegistry | None = None
        if config.console is not None:
            self.devices = DeviceRegistry(
                config.spool.directory.parent / "devices.json",
                silent_after=config.console.silent_after,
            )
            self.status.watch_devices(self.devices.silent_count)
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._started = False

    async def startup(self) -> None:
        """Start the health endpoint, open the queue, start delivery and the listeners (in
        that order: while a cluster's database cannot be reached yet, `/readyz` says so)."""
        await asyncio.to_thread(check_certificates, self.config.tenants)
        try:
            if self.config.http is not None:
                self.health = HealthServer(
                    self.config.http.address,
                    self.config.http.port,
                    self.status.readiness,
                    self.status.render_metrics,
                    self.status.problems,
                )
                await self.health.start()
            await self.queue.open()
        except BaseException:
            await self._close()
            raise
        try:
            queued = await self.queue.recover()
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
            transports: dict[Transport, TransportProtocol] = {
                Transport.GRAPH: GraphTransport(graph, self._tokens),
                Transport.SMTP_OAUTH: SmtpOAuthTransport(
                    self._tokens, timeout=self.config.delivery.request_timeout
                ),
            }

            def transport_for(route: Route) -> TransportProtocol:
                return transports[route.tenant.transport]

            self.engine = DeliveryEngine(
                admission=self._admission,
                queue=self.queue,
                router=lambda: self._state.router,
                transport_for=transport_for,
                settings=self.config.delivery,
                hostname=self.config.smtp.hostname or socket.getfqdn(),
            )
            self.engine.observers.append(self.status.delivery_event)
            if self.devices is not None:
                await asyncio.to_thread(self.devices.load)
                self.engine.observers.append(self.devices.delivery)
            self.status.watch_delivery(self.engine.gauges)
            now = time.time()
            for found in queued:
                self.engine.submit(
                    found.queue_id, max(0.0, found.next_attempt - now), size=found.size
                )
            self.engine.recover(queued)
            self.engine.start()
            if self.spool is not None:  # a cluster's queue commands go to the database
                self._control = ControlServer(self.spool.directory, self._queue_admin(self.engine))
                await self._control.start()
            if self.config.console is not None:
                self.console = self._console(self.engine)
                await self.console.start()
            handler = Handler(
                state=lambda: self._state,
                queue=self.queue,
                on_queued=self.engine.submit,
                capacity=self._capacity_problem,
                executor=self._accept_io,
                metrics=self.metrics,
                devices=self.devices or NO_DEVICES,
            )
            self.listeners = Listeners(
                self.config.smtp,
                handler,
                advertised_size(self.config.smtp, self.config.tenants, self.config.routing),
                size_reason=size_cap_reason(self.config.tenants, self.config.routing),
            )
            await self.listeners.start()
        except BaseException:
            await self._close()
            raise
        self._started = True
        warn_config(self.config.warnings)
        warn_expiring(self.config.tenants, datetime.datetime.now(datetime.UTC).date())
        log.info(
            "started",
            listeners=len(self.listeners.bound),
            recovered=len(queued),  # both of these:
            requeued_from_active=sum(1 for found in queued if found.requeued),
            waiting=sum(1 for found in queued if not found.requeued),
            tenants=[tenant.name for tenant in self.config.tenants],
        )

    def _queue_admin(self, engine: DeliveryEngine) -> QueueAdmin:
        """Queue commands run on the event loop; the engine hears of every change at once."""
        return QueueAdmin(self.queue, Listener(queued=engine.submit, removed=engine.forget))

    def _console(self, engine: DeliveryEngine) -> ConsoleServer:
        """The operator console, acting on the queue through the same `QueueAdmin` as the
        queue commands (so the engine hears of every change)."""
        settings = self.config.console
        assert settings is not None
        testmail = TestMail(self.queue, lambda: self._state.router, engine.submit)
        engine.observers.append(testmail.observe)
        activity = Activity()
        engine.observers.append(activity.record)
        service = ConsoleService(
            self.queue,
            self._queue_admin(engine),
            self.status,
            lambda: self._state.router,
            devices=self.devices,
            ended=testmail.ended,
            activity=activity,
        )
        context = Context(
            service=service,
            auth=Authenticator(settings, Sessions(settings.session_idle_timeout)),
            tenant_names=lambda: [tenant.name for tenant in self._state.config.tenants],
            testmail=testmail,
            secure=settings.tls is not None,
        )
        if settings.microsoft is not None:
            tenant = next(t for t in self.config.tenants if t.name == settings.microsoft.tenant)
            self._console_signin = ConsoleSignIn(
                tenant, proxy=self.config.proxy, timeout=self.config.delivery.token_timeout
            )
            context = dataclasses.replace(
                context, microsoft=(settings.microsoft, self._console_signin)
            )
        tls = server_context(settings.tls, "console.tls") if settings.tls is not None else None
        return ConsoleServer(settings.address, settings.port, context, tls)

    def _capacity_problem(self) -> str | None:
        """Why new mail cannot be taken right now (queue too deep, no room), or None."""
        settings = self.config.spool
        if self.engine is not None and self.engine.depth >= settings.max_messages:
            return f"{self.engine.depth} messages queued (spool.max_messages)"
        return self.queue.problem()

    async def reload(self) -> bool:
        """`_reload`, counted in the metrics (`…_config_reload_failures_total`,
        `…_config_last_reload_success`)."""
        ok = await self._reload()
        self.metrics.config_reloaded(ok)
        return ok

    async def _reload(self) -> bool:
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
        except Exception as error:  # a reload must never take the daemon down
            log.error(
                "reload_failed",
                errors=[f"unexpected {type(error).__name__} while reading the configuration"],
                action="the previous configuration stays in force; fix the file and reload again",
                exc_info=error,
            )
            return False
        if self.engine is not None:
            restart += self.engine.update_settings(new.delivery)
        for key in ("spool", "http", "console", "drain_timeout"):
            if getattr(new, key) != getattr(self.config, key):
                restart.append(key)
        self._state = PolicyState(new, router_for(new))
        self.config = new
        warn_config(new.warnings)
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
        queued = await self._queued() if self._started else None
        await self._close()
        log.info("stopped", queued=queued)

    async def _queued(self) -> int | None:
        """Messages left waiting in the queue (for the `stopped` line)."""
        try:
            census = await self.queue.census()
        except Exception:  # noqa: BLE001 - a line at exit must not stop the exit
            return None
        states = census.get("states")
        return states.get("queue") if isinstance(states, dict) else None

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
        if self.console is not None:
            await self.console.stop()
            self.console = None
        if self._console_signin is not None:
            await asyncio.to_thread(self._console_signin.close)
        if self.devices is not None:
            await asyncio.to_thread(self.devices.close)
        if self.health is not None:
            await self.health.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._tokens is not None:
            await asyncio.to_thread(self._tokens.close)
        await self.queue.close()
        self._accept_io.shutdown(wait=False, cancel_futures=False)
        self._delivery_io.shutdown(wait=False, cancel_futures=False)


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
        ok = False
        try:
            ok = await gateway.reload()
        finally:  # systemd waits for READY=1 after RELOADING=1, whatever happened
            status = "serving" if ok else "serving; the last reload failed (see the log)"
            notifier.send(READY=1, STATUS=status)

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
        # A stop asked for while the start waits (for a cluster's database) ends the wait.
        starting = loop.create_task(gateway.startup())
        stopping = loop.create_task(gateway.serve())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            return
        await starting  # its exception, if it failed
        notifier.send(READY=1, STATUS="serving")
        await stopping
    finally:
        notifier.send(STOPPING=1, STATUS="draining")
        loop.remove_signal_handler(signal.SIGHUP)
        try:
            await gateway.shutdown()
        finally:
            watchdog.cancel()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
