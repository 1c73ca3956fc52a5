"""Prometheus metrics: what an administrator graphs and alerts on.

One `Metrics` object per gateway, with its own registry (so tests and several gateways in one
process do not share counters). Queue gauges are computed when scraped, from the spool and the
delivery engine, so they are never stale. `METRIC_NAMES` is the contract the Grafana dashboard
and the alert rules rely on. Names follow Prometheus' conventions (base units, `_total` for
counters), so `promtool check metrics` accepts the exposition: a credential's expiry is the
time it expires, in seconds since the epoch, not a count of days.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
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
    f"{PREFIX}_credential_expiry_timestamp_seconds",
    f"{PREFIX}_ready",
    f"{PREFIX}_delivery_in_flight",
    f"{PREFIX}_delivery_bytes_in_flight",
    f"{PREFIX}_delivery_waiting_for_memory",
    f"{PREFIX}_delivery_tenants_in_outage",
    f"{PREFIX}_delivery_outage_probes_total",
    f"{PREFIX}_config_reload_failures_total",
    f"{PREFIX}_config_last_reload_success",
    f"{PREFIX}_cluster_nodes",
    f"{PREFIX}_devices_silent",
)


_DELIVERY_GAUGES = {
    "in_flight": "Deliveries under way",
    "bytes_in_flight": "Total size of the messages being delivered (delivery.max_bytes_in_flight)",
    "waiting_for_memory": "Messages waiting until the ones being delivered leave room in memory",
    "tenants_in_outage": "Tenants whose service is down: their mail waits for a probe to find "
    "the end of the outage",
}


class _LiveGauges(Collector):
    """Gauges read at scrape time."""

    def __init__(self, read: Callable[[], dict[str, object]]) -> None:
        self._read = read

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        values = self._read()
        queue = GaugeMetricFamily(
            f"{PREFIX}_queue_messages",
            "Messages in the queue by state (a cluster's: the same on every node)",
            labels=["state"],
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
        # A cluster counts the nodes whose heartbeat is recent; a file spool is one node's.
        nodes = values.get("nodes", 1 if "states" in values else None)
        if isinstance(nodes, int):
            cluster = GaugeMetricFamily(
                f"{PREFIX}_cluster_nodes",
                "Gateways sharing the queue (heartbeat within three leases)",
            )
            cluster.add_metric([], float(nodes))
            yield cluster
        expiry = GaugeMetricFamily(
            f"{PREFIX}_credential_expiry_timestamp_seconds",
            "When a tenant's client secret or certificate expires (Unix time)",
            labels=["tenant", "credential"],
        )
        credentials = values.get("credentials")
        for (tenant, kind), when in credentials.items() if isinstance(credentials, dict) else []:
            expiry.add_metric([tenant, kind], float(when))
        yield expiry
        ready = GaugeMetricFamily(
            f"{PREFIX}_ready", "1 when the gateway can take mail", labels=["check"]
        )
        checks = values.get("ready")
        for check, ok in checks.items() if isinstance(checks, dict) else []:
            ready.add_metric([check], 1.0 if ok else 0.0)
        yield ready
        silent = values.get("devices_silent")
        devices = GaugeMetricFamily(
            f"{PREFIX}_devices_silent",
            "Devices that sent on most days and then nothing for console.silent_after "
            "(0 without the console, which keeps the device list)",
        )
        devices.add_metric([], float(silent) if isinstance(silent, int) else 0.0)
        yield devices
        delivery = values.get("delivery")
        gauges = delivery if isinstance(delivery, dict) else {}
        for key, help_text in _DELIVERY_GAUGES.items():
            gauge = GaugeMetricFamily(f"{PREFIX}_delivery_{key}", help_text)
            gauge.add_metric([], float(gauges.get(key, 0)))
            yield gauge
        probes = CounterMetricFamily(
            f"{PREFIX}_delivery_outage_probes",
            "Requests sent to find the end of a tenant's outage (one per tenant per interval)",
        )
        probes.add_metric([], float(gauges.get("outage_probes", 0)))
        yield probes


class Metrics:
    """Counters and histograms the gateway updates as it works."""

    def __init__(self) -> None:
        # The live gauges are read from the queue only when scraped.
        self.registry = CollectorRegistry(auto_describe=False)
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
        self.reload_failures = Counter(
            f"{PREFIX}_config_reload_failures",
            "Configuration reloads (SIGHUP) refused: the previous configuration stayed in force",
            registry=registry,
        )
        self.last_reload_success = Gauge(
            f"{PREFIX}_config_last_reload_success",
            "1 when the last configuration load (start or reload) succeeded, 0 when it failed",
            registry=registry,
        )
        self.last_reload_success.set(1)  # the gateway started with a valid configuration
        self._started = time.time()
        self._values: dict[str, object] = {}
        self._rendering = threading.Lock()
        self.registry.register(_LiveGauges(lambda: self._values))

    def config_reloaded(self, ok: bool) -> None:
        """Count a reload's outcome."""
        self.last_reload_success.set(1 if ok else 0)
        if not ok:
            self.reload_failures.inc()

    def render(self, values: dict[str, object] | None = None) -> bytes:
        """The text exposition format, with the scrape-time gauges (queue, credentials,
        readiness, delivery) from `values` (see `Status.snapshot`). Blocking: run it in a
        thread; scrapes at once take turns."""
        with self._rendering:
            self._values = values or {}
            return generate_latest(self.registry)
