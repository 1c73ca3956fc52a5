"""Prometheus metrics: what an administrator graphs and alerts on.

One `Metrics` object per gateway, with its own registry (so tests and several gateways in one
process do not share counters). Queue gauges are computed when scraped, from the spool and the
delivery engine, so they are never stale. `METRIC_NAMES` is the contract the Grafana dashboard
and the alert rules rely on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

PREFIX = "smtp_graph_gateway"
METRIC_NAMES = (
    f"{PREFIX}_smtp_connections_total",
    f"{PREFIX}_smtp_transactions_total",
    f"{PREFIX}_smtp_received_bytes_total",
    f"{PREFIX}_queue_messages",
    f"{PREFIX}_queue_oldest_message_age_seconds",
    f"{PREFIX}_delivery_attempts_total",
    f"{PREFIX}_graph_request_duration_seconds",
    f"{PREFIX}_token_requests_total",
    f"{PREFIX}_throttled_total",
    f"{PREFIX}_credential_expiry_days",
    f"{PREFIX}_ready",
    f"{PREFIX}_delivery_in_flight",
    f"{PREFIX}_delivery_bytes_in_flight",
    f"{PREFIX}_delivery_waiting_for_memory",
)


_DELIVERY_GAUGES = {
    "in_flight": "Deliveries under way",
    "bytes_in_flight": "Total size of the messages being delivered (delivery.max_bytes_in_flight)",
    "waiting_for_memory": "Messages waiting until the ones being delivered leave room in memory",
}


class _LiveGauges(Collector):
    """Gauges read at scrape time."""

    def __init__(self, read: Callable[[], dict[str, object]]) -> None:
        self._read = read

    def collect(self) -> Iterable[GaugeMetricFamily]:
        values = self._read()
        queue = GaugeMetricFamily(
            f"{PREFIX}_queue_messages", "Messages in the spool by state", labels=["state"]
        )
        counts = values.get("states")
        for state, count in counts.items() if isinstance(counts, dict) else []:
            queue.add_metric([state], float(count))
        yield queue
        oldest = values.get("oldest_age")
        age = GaugeMetricFamily(
            f"{PREFIX}_queue_oldest_message_age_seconds",
            "Age of the oldest message waiting for delivery",
        )
        age.add_metric([], float(oldest) if isinstance(oldest, int | float) else 0.0)
        yield age
        expiry = GaugeMetricFamily(
            f"{PREFIX}_credential_expiry_days",
            "Days until a tenant's credential expires",
            labels=["tenant", "credential"],
        )
        credentials = values.get("credentials")
        for (tenant, kind), days in credentials.items() if isinstance(credentials, dict) else []:
            expiry.add_metric([tenant, kind], float(days))
        yield expiry
        ready = GaugeMetricFamily(
            f"{PREFIX}_ready", "1 when the gateway can take mail", labels=["check"]
        )
        checks = values.get("ready")
        for check, ok in checks.items() if isinstance(checks, dict) else []:
            ready.add_metric([check], 1.0 if ok else 0.0)
        yield ready
        delivery = values.get("delivery")
        gauges = delivery if isinstance(delivery, dict) else {}
        for key, help_text in _DELIVERY_GAUGES.items():
            gauge = GaugeMetricFamily(f"{PREFIX}_delivery_{key}", help_text)
            gauge.add_metric([], float(gauges.get(key, 0)))
            yield gauge


class Metrics:
    """Counters and histograms the gateway updates as it works."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(
            auto_describe=False
        )  # gauges read the spool only when scraped
        registry = self.registry
        self.connections = Counter(
            f"{PREFIX}_smtp_connections",
            "SMTP connections",
            ["listener", "result"],
            registry=registry,
        )
        self.transactions = Counter(
            f"{PREFIX}_smtp_transactions",
            "SMTP commands answered",
            ["listener", "result"],
            registry=registry,
        )
        self.received_bytes = Counter(
            f"{PREFIX}_smtp_received_bytes",
            "Message bytes accepted",
            ["listener"],
            registry=registry,
        )
        self.attempts = Counter(
            f"{PREFIX}_delivery_attempts",
            "Graph delivery attempts",
            ["tenant", "outcome", "code"],
            registry=registry,
        )
        self.graph_latency = Histogram(
            f"{PREFIX}_graph_request_duration_seconds",
            "Graph request duration",
            ["tenant"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )
        self.tokens = Counter(
            f"{PREFIX}_token_requests",
            "Entra ID token requests",
            ["tenant", "result"],
            registry=registry,
        )
        self.throttled = Counter(
            f"{PREFIX}_throttled", "Graph answers 429 (throttled)", ["tenant"], registry=registry
        )
        self._started = time.time()

    def watch(self, read: Callable[[], dict[str, object]]) -> None:
        """Register the scrape-time gauges (queue, credentials, readiness)."""
        self.registry.register(_LiveGauges(read))

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
