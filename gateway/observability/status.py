"""What the gateway knows about its own health: readiness, credential expiry, metric updates.

`Status` is fed by the components (delivery events, token results, listeners bound) and read by
`/readyz`, `/metrics` and the start-up and reload warnings about expiring credentials (and
about configuration values that are probably mistakes).
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Callable

import structlog

from gateway.config import Tenant
from gateway.delivery.events import DeliveryEvent
from gateway.entra.credentials import certificate_summary
from gateway.errors import ConfigError, ConfigIssue, SpoolError
from gateway.observability.metrics import Metrics
from gateway.queue.base import Queue

log = structlog.get_logger("gateway")
EXPIRY_WARNING_DAYS = 30


def credential_days(
    tenants: tuple[Tenant, ...], today: datetime.date
) -> dict[tuple[str, str], int]:
    """Days left per (tenant, credential) for credentials whose expiry is known: a secret's
    `client_secret_expires`, a certificate's notAfter (read from the file). A federated token
    file or a managed identity has nothing to expire and no entry (their token failures are
    counted and shown in readiness like any other tenant's)."""
    days: dict[tuple[str, str], int] = {}
    for tenant in tenants:
        if tenant.client_secret_expires is not None:
            days[(tenant.name, "client_secret")] = (tenant.client_secret_expires - today).days
        if tenant.certificate is not None:
            try:
                summary = certificate_summary(tenant.certificate)
            except ConfigError:
                continue  # reported at start-up and by check
            days[(tenant.name, "certificate")] = summary.days_left(today)
    return days


def credential_expiry(tenants: tuple[Tenant, ...]) -> dict[tuple[str, str], float]:
    """When each credential with a known expiry expires, in seconds since the epoch: a secret
    at the start of its `client_secret_expires` day (UTC), a certificate at its notAfter."""
    found: dict[tuple[str, str], float] = {}
    for tenant in tenants:
        if tenant.client_secret_expires is not None:
            day = tenant.client_secret_expires
            start = datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC)
            found[(tenant.name, "client_secret")] = start.timestamp()
        if tenant.certificate is not None:
            try:
                summary = certificate_summary(tenant.certificate)
            except ConfigError:
                continue  # reported at start-up and by check
            found[(tenant.name, "certificate")] = summary.not_after.timestamp()
    return found


def warn_expiring(tenants: tuple[Tenant, ...], today: datetime.date) -> None:
    """One warning per credential that expires within 30 days (or has expired)."""
    for (tenant, kind), days in credential_days(tenants, today).items():
        if days <= EXPIRY_WARNING_DAYS:
            log.warning(
                "credential_expiring",
                tenant=tenant,
                credential=kind,
                days_left=days,
                action="create a new secret under Certificates & secrets, then update "
                "the secret file and reload",
            )


def warn_config(warnings: tuple[ConfigIssue, ...]) -> None:
    """One `config_warning` line per value that loaded but is probably a mistake."""
    for warning in warnings:
        log.warning("config_warning", path=warning.path, problem=warning.message, hint=warning.hint)


def _token_word(ok: bool | None) -> str:
    if ok is None:
        return "not tried yet"
    return "ok" if ok else "failed"


class Status:
    """Health facts gathered from the running components."""

    def __init__(
        self,
        queue: Queue,
        metrics: Metrics,
        tenants: Callable[[], tuple[Tenant, ...]],
        listeners_bound: Callable[[], bool],
    ) -> None:
        self._queue = queue
        self._metrics = metrics
        self._tenants = tenants
        self._listeners_bound = listeners_bound
        self._token_ok: dict[str, bool] = {}
        self._token_problems: dict[str, str] = {}
        self._last_error: dict[str, dict[str, object]] = {}  # per tenant: the last failed attempt
        self._delivery: Callable[[], dict[str, int]] = dict
        self._silent_devices: Callable[[], int] | None = None

    def watch_delivery(self, read: Callable[[], dict[str, int]]) -> None:
        """Where the delivery gauges come from (the engine starts after this object)."""
        self._delivery = read

    def watch_devices(self, silent: Callable[[], int]) -> None:
        """Where the count of silent devices comes from (when the registry runs)."""
        self._silent_devices = silent

    def token_result(self, tenant: str, ok: bool, reason: str = "") -> None:
        """A token request for `tenant` succeeded or failed (and why)."""
        self._token_ok[tenant] = ok
        if ok:
            self._token_problems.pop(tenant, None)
        else:
            self._token_problems[tenant] = reason
        self._metrics.tokens.labels(tenant, "ok" if ok else "failed").inc()

    def delivery_event(self, event: DeliveryEvent) -> None:
        """Count one delivery attempt."""
        tenant = event.tenant or "unrouted"
        self._metrics.attempts.labels(tenant, event.result, event.code or "none").inc()
        if event.duration is not None:
            self._metrics.graph_latency.labels(tenant).observe(event.duration)
        if event.status == 429:
            self._metrics.throttled.labels(tenant).inc()
        if event.result != "delivered" and (event.status or event.code):
            self._last_error[tenant] = {
                "at": time.time(),
                "status": event.status,
                "code": event.code,
                "reason": event.reason,
                "queue_id": event.queue_id,
            }

    def tenant_health(self, today: datetime.date) -> list[dict[str, object]]:
        """Per tenant, for the console: token state (and why it fails), days left on each
        credential with a known expiry, and the last failed Graph answer."""
        days = credential_days(self._tenants(), today)
        return [
            {
                "name": tenant.name,
                "credential": str(tenant.credential_kind),
                "token": _token_word(self._token_ok.get(tenant.name)),
                "token_problem": self._token_problems.get(tenant.name, ""),
                "credential_days_left": {
                    kind: left for (name, kind), left in days.items() if name == tenant.name
                },
                "last_error": self._last_error.get(tenant.name),
            }
            for tenant in self._tenants()
        ]

    def problems(self) -> dict[str, str]:
        """Why each failing readiness check fails, for the administrator."""
        found = {
            f"tenant:{name}": reason for name, reason in self._token_problems.items() if reason
        }
        problem = self._queue.problem()
        if problem:
            for check in self._queue.readiness():  # named as its readiness check ("queue")
                found[check] = problem
        return found

    def readiness(self) -> dict[str, bool]:
        """Each check by name; ready when all are true. Tenants never tried count as usable."""
        checks = {"listeners": self._listeners_bound(), **self._queue.readiness()}
        for tenant in self._tenants():
            checks[f"tenant:{tenant.name}"] = self._token_ok.get(tenant.name, True)
        return checks

    async def snapshot(self) -> dict[str, object]:
        """Scrape-time values for the metrics gauges (it asks the queue)."""
        try:
            census = await self._queue.census()
        except (SpoolError, OSError):  # the queue is away (or not open yet): `ready` says so
            census = {}
        return {
            **census,
            "credentials": credential_expiry(self._tenants()),
            "ready": self.readiness(),
            "delivery": self._delivery(),
            # No registry (the console is off): no device is known to have gone silent.
            "devices_silent": self._silent_devices() if self._silent_devices is not None else 0,
        }

    async def render_metrics(self) -> bytes:
        """`/metrics`: the snapshot, rendered in a thread."""
        snapshot = await self.snapshot()
        return await asyncio.to_thread(self._metrics.render, snapshot)
