"""What the gateway knows about its own health: readiness, credential expiry, metric updates.

`Status` is fed by the components (delivery events, token results, listeners bound) and read by
`/readyz`, `/metrics` and the start-up and reload warnings about expiring credentials.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

import structlog

from gateway.config import Tenant
from gateway.delivery.engine import DeliveryEvent
from gateway.errors import ConfigError
from gateway.graph.credentials import certificate_summary
from gateway.observability.metrics import Metrics
from gateway.spool import Spool

log = structlog.get_logger("gateway")
EXPIRY_WARNING_DAYS = 30


def credential_days(
    tenants: tuple[Tenant, ...], today: datetime.date
) -> dict[tuple[str, str], int]:
    """Days left per (tenant, credential) for credentials whose expiry is known: a secret's
    `client_secret_expires`, a certificate's notAfter (read from the file)."""
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


class Status:
    """Health facts gathered from the running components."""

    def __init__(
        self,
        spool: Spool,
        metrics: Metrics,
        tenants: Callable[[], tuple[Tenant, ...]],
        listeners_bound: Callable[[], bool],
    ) -> None:
        self._spool = spool
        self._metrics = metrics
        self._tenants = tenants
        self._listeners_bound = listeners_bound
        self._token_ok: dict[str, bool] = {}
        self._token_problems: dict[str, str] = {}
        self._delivery: Callable[[], dict[str, int]] = dict

    def watch_delivery(self, read: Callable[[], dict[str, int]]) -> None:
        """Where the delivery gauges come from (the engine starts after this object)."""
        self._delivery = read

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

    def problems(self) -> dict[str, str]:
        """Why each failing readiness check fails, for the administrator."""
        return {f"tenant:{name}": reason for name, reason in self._token_problems.items() if reason}

    def readiness(self) -> dict[str, bool]:
        """Each check by name; ready when all are true. Tenants never tried count as usable."""
        checks = {"listeners": self._listeners_bound(), "spool_writable": self._spool.writable()}
        for tenant in self._tenants():
            checks[f"tenant:{tenant.name}"] = self._token_ok.get(tenant.name, True)
        return checks

    def scrape(self) -> dict[str, object]:
        """Scrape-time values for the metrics gauges (runs in a thread: it reads the spool)."""
        census = self._spool.census()
        return {
            **census,
            "credentials": credential_days(
                self._tenants(), datetime.datetime.now(datetime.UTC).date()
            ),
            "ready": self.readiness(),
            "delivery": self._delivery(),
        }
