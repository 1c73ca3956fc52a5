"""Load the YAML configuration, validate all of it, and build the frozen model.

`load_config(path)` either returns a `Config` or raises one `ConfigError` that lists every
problem with its YAML path and a hint. Cross-field rules (TLS listeners need a certificate,
each domain belongs to one tenant, ...) are checked here too, so `serve` never starts with a
configuration that cannot work.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path

import yaml

from gateway.config.console import read_console
from gateway.config.lint import lint_senders
from gateway.config.model import (
    Client,
    Config,
)
from gateway.config.operations import (
    read_delivery,
    read_http,
    read_logging,
    read_proxy,
    read_spool,
)
from gateway.config.reader import Reader, check_unique
from gateway.config.routes import read_routing
from gateway.config.senders import read_client, read_user
from gateway.config.smtp import read_smtp, read_tls_files
from gateway.config.tenants import check_domains, read_tenant
from gateway.errors import ConfigError, ConfigIssue

_TOP_KEYS = (
    "routing",
    "proxy",
    "smtp",
    "clients",
    "users",
    "tenants",
    "spool",
    "delivery",
    "http",
    "console",
    "logging",
    "shutdown",
)
LOOPBACK_CLIENT = Client(
    name="loopback",
    networks=(ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")),
    senders=("*",),
)


def load_config(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the YAML file at `path`."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError([ConfigIssue(str(path), f"cannot read: {error.strerror}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ConfigError(
            [
                ConfigIssue(
                    f"{path}: line {line}",
                    f"not UTF-8 (byte 0x{data[error.start]:02x})",
                    "save the file as UTF-8",
                )
            ]
        ) from None
    return parse_config(text, base_dir=path.parent, env=env, source=path)


def parse_config(
    text: str,
    *,
    base_dir: Path,
    env: Mapping[str, str] | None = None,
    source: Path | None = None,
) -> Config:
    """Validate YAML text; relative paths in it are taken relative to `base_dir`."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError([ConfigIssue(where, str(problem), "fix the YAML syntax")]) from None
    except ValueError as error:  # a value YAML itself cannot build, such as 2027-02-30
        raise ConfigError(
            [ConfigIssue("YAML", f"a value cannot be read: {error}", "quote it, or fix it")]
        ) from None
    except RecursionError:
        raise ConfigError(
            [ConfigIssue("YAML", "nested too deeply", "fix the YAML structure")]
        ) from None
    reader = Reader(env=os.environ if env is None else env, base_dir=base_dir)
    config = _read_config(reader, document, source)
    if reader.issues or config is None:
        raise ConfigError(reader.issues or [ConfigIssue("", "the configuration is empty")])
    return config


def _read_config(reader: Reader, document: object, source: Path | None) -> Config | None:
    root = reader.mapping(document, "", _TOP_KEYS)
    if root is None:
        return None
    tls_default = read_tls_files(reader, root.get("smtp"), "smtp")
    smtp = read_smtp(reader, root.get("smtp"), tls_default)
    read_clients = [
        (where, client)
        for where, node in reader.items(root.get("clients"), "clients")
        if (client := read_client(reader, node, where)) is not None
    ]
    read_users = [
        (where, user)
        for where, node in reader.items(root.get("users"), "users")
        if (user := read_user(reader, node, where)) is not None
    ]
    clients = tuple(client for _where, client in read_clients)
    users = tuple(user for _where, user in read_users)
    tenants = tuple(
        tenant
        for where, node in reader.items(root.get("tenants"), "tenants")
        if (tenant := read_tenant(reader, node, where)) is not None
    )
    if not root.get("tenants"):  # missing, or `tenants: []`: every MAIL would be refused
        reader.issue("tenants", "at least one tenant is required", "see config/example.yaml")
    check_unique(reader, "clients", [c.name for c in clients], "name")
    check_unique(reader, "users", [u.username for u in users], "username")
    if not users and any(listener.auth != "off" for listener in smtp.listeners):
        reader.issue(
            "users",
            "a listener offers SMTP AUTH but no users are configured",
            "add users (passwords from: smtp-graph-gateway hash-password)",
        )
    check_unique(reader, "tenants", [t.name for t in tenants], "name")
    check_domains(reader, tenants)
    spool = read_spool(reader, root.get("spool"), smtp.max_message_size)
    # A delegated tenant's token cache defaults to tokens/NAME.json beside the spool directory.
    tenants = tuple(
        dataclasses.replace(
            tenant, token_cache=spool.directory.parent / "tokens" / f"{tenant.name}.json"
        )
        if tenant.delegated and tenant.token_cache is None
        else tenant
        for tenant in tenants
    )
    shutdown = reader.mapping(root.get("shutdown"), "shutdown", ("drain_timeout",)) or {}
    routing = read_routing(reader, root.get("routing"), tenants)
    lint_senders(reader, [*read_clients, *read_users], tenants, routing)
    return Config(
        smtp=smtp,
        clients=clients if root.get("clients") is not None else (LOOPBACK_CLIENT,),
        users=users,
        tenants=tenants,
        spool=spool,
        delivery=read_delivery(reader, root.get("delivery")),
        http=read_http(reader, root.get("http")),
        console=read_console(reader, root.get("console"), tls_default, tenants),
        logging=read_logging(reader, root.get("logging")),
        drain_timeout=reader.duration(shutdown, "drain_timeout", "shutdown", 30.0),
        routing=routing,
        proxy=read_proxy(reader, root),
        source=source,
        warnings=tuple(reader.warnings),
    )
