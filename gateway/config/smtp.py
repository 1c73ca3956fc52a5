"""The `smtp` section: listeners, TLS files and the front door's limits."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from typing import Any

from gateway.config.model import (
    Listener,
    SmtpSettings,
    TlsFiles,
    TlsMode,
)
from gateway.config.reader import Reader, check_unique, join

_TLS_VERSIONS = ("tlsv1", "tlsv1.1", "tlsv1.2", "tlsv1.3")


def read_tls_files(reader: Reader, value: object, path: str) -> TlsFiles | None:
    """The `tls` block of a section (certificate chain, key, oldest TLS version), or None."""
    node = value.get("tls") if isinstance(value, dict) else None
    where = join(path, "tls")
    tls = reader.mapping(node, where, ("cert_file", "key_file", "min_version"))
    if not tls:
        return None
    cert = reader.existing_file(tls, "cert_file", where)
    key = reader.existing_file(tls, "key_file", where)
    version = reader.choice(tls, "min_version", where, _TLS_VERSIONS, "tlsv1.2")
    if "cert_file" not in tls or "key_file" not in tls:
        reader.issue(
            where, "cert_file and key_file are both required", "give the PEM chain and key"
        )
    if cert is None or key is None:
        return None
    return TlsFiles(cert_file=cert, key_file=key, min_version=version)


def read_smtp(reader: Reader, value: object, tls_default: TlsFiles | None) -> SmtpSettings:
    """The `smtp` section."""
    keys = (
        "hostname",
        "listeners",
        "tls",
        "max_message_size",
        "max_recipients",
        "command_timeout",
        "max_connections",
        "max_connections_per_ip",
        "refuse_unknown_at",
        "max_header_size",
        "max_multipart_parts",
        "idle_timeout",
        "login_timeout",
        "max_messages_per_connection",
        "max_junk_commands",
        "reserved_connections",
    )
    node = reader.mapping(value, "smtp", keys) or {}
    listeners = []
    for where, item in reader.items(node.get("listeners"), "smtp.listeners"):
        listener = _read_listener(reader, item, where, tls_default)
        if listener is not None:
            listeners.append(listener)
    if node.get("listeners") is None:
        reader.issue(
            "smtp.listeners",
            "at least one listener is required",
            "e.g. - {name: lan, address: 0.0.0.0, port: 2525}",
        )
    check_unique(reader, "smtp.listeners", [listener.name for listener in listeners], "name")
    bound = [(listener.address, listener.port) for listener in listeners if listener.port]
    if len(set(bound)) != len(bound):
        reader.issue("smtp.listeners", "two listeners use the same address and port")
    return SmtpSettings(
        hostname=reader.string(node, "hostname", "smtp") or "",
        listeners=tuple(listeners),
        max_message_size=reader.size(
            node, "max_message_size", "smtp", 35 * 1024 * 1024, minimum=65536
        ),
        max_recipients=reader.integer(
            node, "max_recipients", "smtp", 500, minimum=1, maximum=100000
        ),
        command_timeout=reader.duration(node, "command_timeout", "smtp", 300.0, minimum=1.0),
        max_connections=reader.integer(node, "max_connections", "smtp", 200, minimum=1),
        max_connections_per_ip=reader.integer(
            node, "max_connections_per_ip", "smtp", 20, minimum=1
        ),
        refuse_unknown_at=reader.choice(
            node, "refuse_unknown_at", "smtp", ("connect", "mail"), "connect"
        ),
        max_header_size=reader.size(node, "max_header_size", "smtp", 256 * 1024, minimum=1024),
        max_multipart_parts=reader.integer(node, "max_multipart_parts", "smtp", 100, minimum=1),
        idle_timeout=reader.duration(node, "idle_timeout", "smtp", 60.0, minimum=1.0),
        login_timeout=reader.duration(node, "login_timeout", "smtp", 30.0, minimum=1.0),
        max_messages_per_connection=reader.integer(
            node, "max_messages_per_connection", "smtp", 1000, minimum=1
        ),
        max_junk_commands=reader.integer(node, "max_junk_commands", "smtp", 20, minimum=1),
        reserved_connections=_reserved_connections(reader, node),
    )


def _reserved_connections(reader: Reader, node: Mapping[str, Any]) -> int:
    """Slots that hosts outside `clients` (admitted to log in on an AUTH listener) cannot take:
    by default a quarter of `max_connections`."""
    total = reader.integer(node, "max_connections", "smtp", 200, minimum=1)
    reserved = reader.integer(node, "reserved_connections", "smtp", max(1, total // 4), minimum=0)
    if reserved >= total:
        reader.issue(
            "smtp.reserved_connections",
            f"must be less than smtp.max_connections ({total})",
            "hosts that must log in would get no connection at all",
        )
        return max(0, total - 1)
    return reserved


def _read_listener(
    reader: Reader, value: object, path: str, tls_default: TlsFiles | None
) -> Listener | None:
    keys = (
        "name",
        "address",
        "port",
        "tls",
        "require_tls",
        "cert_file",
        "key_file",
        "min_version",
        "auth",
        "allow_cleartext_auth",
        "proxy_protocol_from",
    )
    node = reader.mapping(value, path, keys)
    if node is None:
        return None
    name = reader.string(node, "name", path) or path
    address = reader.string(node, "address", path, "127.0.0.1") or "127.0.0.1"
    try:
        ipaddress.ip_address(address)
    except ValueError:
        reader.issue(
            join(path, "address"),
            f"not an IP address: {address!r}",
            "use 0.0.0.0 (all IPv4), :: (all IPv6) or one address of this host",
        )
    port = reader.integer(node, "port", path, 25, maximum=65535)
    mode = TlsMode(reader.choice(node, "tls", path, [m.value for m in TlsMode], "none"))
    tls_files = tls_default
    if "cert_file" in node or "key_file" in node:
        cert = reader.existing_file(node, "cert_file", path)
        key = reader.existing_file(node, "key_file", path)
        version = reader.choice(node, "min_version", path, _TLS_VERSIONS, "tlsv1.2")
        tls_files = TlsFiles(cert, key, version) if cert and key else None
    elif "min_version" in node:  # the shared certificate, with this listener's oldest version
        version = reader.choice(node, "min_version", path, _TLS_VERSIONS, "tlsv1.2")
        tls_files = dataclasses.replace(tls_default, min_version=version) if tls_default else None
    if mode is not TlsMode.NONE and tls_files is None:
        reader.issue(
            join(path, "tls"),
            f"tls: {mode.value} needs a certificate",
            "set smtp.tls.cert_file and key_file, or cert_file/key_file on the listener",
        )
    require_tls = reader.boolean(node, "require_tls", path, mode is TlsMode.IMPLICIT)
    if require_tls and mode is TlsMode.NONE:
        reader.issue(join(path, "require_tls"), "require_tls needs tls: starttls or implicit")
    auth = reader.choice(node, "auth", path, ("off", "optional", "required"), "off")
    cleartext = reader.boolean(node, "allow_cleartext_auth", path, False)
    if auth != "off" and mode is TlsMode.NONE and not cleartext:
        reader.issue(
            join(path, "auth"),
            f"auth: {auth} on a listener without TLS",
            "use tls: starttls or implicit, or allow_cleartext_auth: true for devices "
            "that cannot do TLS (their passwords then cross the network in clear)",
        )
    proxies = reader.networks(node, "proxy_protocol_from", path)
    if "proxy_protocol_from" in node and not proxies:
        reader.issue(
            join(path, "proxy_protocol_from"),
            "at least one network is required",
            "the addresses of the load balancers that send PROXY headers",
        )
    return Listener(
        name,
        address,
        port,
        mode,
        tls_files if mode is not TlsMode.NONE else None,
        require_tls,
        auth,
        cleartext,
        proxies,
    )
