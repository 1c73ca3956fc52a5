"""The operating sections: `spool`, `delivery`, `http`, `logging` and the outbound `proxy`."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from gateway.addresses import parse_mailbox
from gateway.config.model import (
    DeliverySettings,
    HttpSettings,
    LoggingSettings,
    PostgresSettings,
    SpoolSettings,
)
from gateway.config.reader import Reader
from gateway.config.secrets import Secret


def read_spool(reader: Reader, value: object, max_message_size: int) -> SpoolSettings:
    """The `spool` section: the file spool (the default), or a cluster's PostgreSQL queue."""
    keys = ("backend", "directory", "min_free_space", "max_messages", "postgresql")
    node = reader.mapping(value, "spool", keys) or {}
    backend = reader.choice(node, "backend", "spool", ("files", "postgresql"), "files")
    clustered = backend == "postgresql"
    if clustered:
        directory = reader.string(node, "directory", "spool") or ""
    else:
        directory = reader.required_string(
            node, "directory", "spool", "e.g. /var/lib/smtp-graph-gateway/spool"
        )
    postgresql = read_postgresql(reader, node.get("postgresql"), required=clustered)
    return SpoolSettings(
        directory=reader.resolve_path(directory or "spool"),
        # Postfix's queue_minfree rule: room for one more message of the largest size, and half.
        min_free_space=reader.size(node, "min_free_space", "spool", int(1.5 * max_message_size)),
        max_messages=reader.integer(node, "max_messages", "spool", 100_000, minimum=1),
        backend=backend,
        postgresql=postgresql,
    )


def read_postgresql(reader: Reader, value: object, *, required: bool) -> PostgresSettings | None:
    """`spool.postgresql`: the connection string and the cluster's settings."""
    path = "spool.postgresql"
    if value is None:
        if required:
            reader.issue(
                path,
                "spool.backend is postgresql but there is no spool.postgresql.dsn",
                'e.g. dsn: "host=db1,db2 dbname=gateway user=gateway '
                'target_session_attrs=read-write"',
            )
        return None
    keys = (
        "dsn",
        "dsn_file",
        "password",
        "password_file",
        "lease",
        "upgrade_schema",
        "node",
        "connections",
    )
    node = reader.mapping(value, path, keys) or {}
    dsn = reader.secret(node, "dsn", path, required=True, what="the PostgreSQL connection string")
    password = reader.secret(node, "password", path, required=False, what="the database password")
    lease = reader.duration(node, "lease", path, 30.0, minimum=5.0)
    settings = PostgresSettings(
        dsn=dsn or Secret(""),
        password=password,
        lease=lease,
        upgrade_schema=reader.boolean(node, "upgrade_schema", path, False),
        node=reader.string(node, "node", path) or "",
        connections=reader.integer(node, "connections", path, 10, minimum=2, maximum=200),
    )
    return settings if dsn is not None else None


def read_delivery(reader: Reader, value: object) -> DeliverySettings:
    """The `delivery` section."""
    keys = (
        "concurrency",
        "request_timeout",
        "token_timeout",
        "retry_initial",
        "retry_max",
        "max_queue_lifetime",
        "max_per_mailbox",
        "mailbox_rate",
        "postmaster",
        "max_bytes_in_flight",
    )
    node = reader.mapping(value, "delivery", keys) or {}
    initial = reader.duration(node, "retry_initial", "delivery", 60.0, minimum=1.0)
    maximum = reader.duration(node, "retry_max", "delivery", 3600.0, minimum=1.0)
    if maximum < initial:
        reader.issue("delivery.retry_max", "must not be shorter than retry_initial")
    return DeliverySettings(
        concurrency=reader.integer(node, "concurrency", "delivery", 8, minimum=1, maximum=256),
        request_timeout=reader.duration(node, "request_timeout", "delivery", 60.0, minimum=1.0),
        token_timeout=reader.duration(node, "token_timeout", "delivery", 30.0, minimum=1.0),
        retry_initial=initial,
        retry_max=maximum,
        max_queue_lifetime=reader.duration(
            node, "max_queue_lifetime", "delivery", 5 * 86400.0, minimum=1.0
        ),
        max_per_mailbox=reader.integer(
            node, "max_per_mailbox", "delivery", 4, minimum=1, maximum=64
        ),
        mailbox_rate=reader.integer(node, "mailbox_rate", "delivery", 30, minimum=0),
        postmaster=_read_postmaster(reader, node),
        max_bytes_in_flight=reader.size(
            node, "max_bytes_in_flight", "delivery", 100 * 1000**2, minimum=1024**2
        ),
    )


def _read_postmaster(reader: Reader, node: Mapping[str, Any]) -> str:
    text = reader.string(node, "postmaster", "delivery") or ""
    if not text:
        return ""
    address = parse_mailbox(text)
    if address is None:
        reader.issue(
            "delivery.postmaster",
            f"not an address: {text!r}",
            "a mailbox in a configured tenant, e.g. postmaster@contoso.com",
        )
        return ""
    return str(address)


def read_http(reader: Reader, value: object) -> HttpSettings | None:
    """The `http` section (None: no health and metrics endpoint)."""
    node = reader.mapping(value, "http", ("listen",))
    if not node or node.get("listen") in (None, False, ""):
        return None
    listen = reader.string(node, "listen", "http") or ""
    host, _, port_text = listen.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        port = int(port_text)
        if not 0 <= port <= 65535:
            raise ValueError(port)  # noqa: TRY301 - one message for every malformed form
    except ValueError:
        reader.issue(
            "http.listen", f"not an address:port: {listen!r}", "e.g. 127.0.0.1:8025 or [::1]:8025"
        )
        return None
    return HttpSettings(address=host, port=port)


def read_logging(reader: Reader, value: object) -> LoggingSettings:
    """The `logging` section."""
    node = reader.mapping(value, "logging", ("level", "format")) or {}
    return LoggingSettings(
        level=reader.choice(
            node, "level", "logging", ("debug", "info", "warning", "error"), "info"
        ),
        format=reader.choice(node, "format", "logging", ("auto", "json", "console"), "auto"),
    )


def read_proxy(reader: Reader, root: Mapping[str, Any]) -> str:
    """The outbound `proxy`, or the environment's `HTTPS_PROXY`."""
    proxy = reader.string(root, "proxy", "") or ""
    if proxy and not re.match(r"^https?://[^/\s]+/?$", proxy):
        reader.issue("proxy", f"not a proxy URL: {proxy!r}", "e.g. http://proxy.contoso.com:3128")
        return ""
    return proxy.rstrip("/")
