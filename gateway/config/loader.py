"""Load the YAML configuration, validate all of it, and build the frozen model.

`load_config(path)` either returns a `Config` or raises one `ConfigError` that lists every
problem with its YAML path and a hint. Cross-field rules (TLS listeners need a certificate,
each domain belongs to one tenant, ...) are checked here too, so `serve` never starts with a
configuration that cannot work.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from gateway.addresses import parse_mailbox
from gateway.config.model import (
    CLOUD_ENDPOINTS,
    EXCHANGE_DEFAULT_MAX_SEND,
    LARGE_MESSAGE_LIMIT,
    MIME_SUBMISSION_LIMIT,
    SMTP_ENDPOINTS,
    AuthKind,
    CertificateCredential,
    Client,
    Cloud,
    Config,
    DeliverySettings,
    HttpSettings,
    Listener,
    LoggingSettings,
    RoutingSettings,
    SmtpSettings,
    SpoolSettings,
    SubmissionMode,
    Tenant,
    TlsFiles,
    TlsMode,
    Transport,
    User,
)
from gateway.config.reader import Reader, join
from gateway.config.units import format_size
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
    "logging",
    "shutdown",
)
_DOMAIN = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$|^[a-z0-9-]+$")
_TLS_VERSIONS = ("tlsv1", "tlsv1.1", "tlsv1.2", "tlsv1.3")
LOOPBACK_CLIENT = Client(
    name="loopback",
    networks=(ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")),
    senders=("*",),
)


def load_config(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the YAML file at `path`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError([ConfigIssue(str(path), f"cannot read: {error.strerror}")]) from None
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
    reader = Reader(env=os.environ if env is None else env, base_dir=base_dir)
    config = _read_config(reader, document, source)
    if reader.issues or config is None:
        raise ConfigError(reader.issues or [ConfigIssue("", "the configuration is empty")])
    return config


def _read_config(reader: Reader, document: object, source: Path | None) -> Config | None:
    root = reader.mapping(document, "", _TOP_KEYS)
    if root is None:
        return None
    tls_default = _read_tls_files(reader, root.get("smtp"), "smtp")
    smtp = _read_smtp(reader, root.get("smtp"), tls_default)
    clients = tuple(
        client
        for where, node in reader.items(root.get("clients"), "clients")
        if (client := _read_client(reader, node, where)) is not None
    )
    users = tuple(
        user
        for where, node in reader.items(root.get("users"), "users")
        if (user := _read_user(reader, node, where)) is not None
    )
    tenants = tuple(
        tenant
        for where, node in reader.items(root.get("tenants"), "tenants")
        if (tenant := _read_tenant(reader, node, where)) is not None
    )
    if root.get("tenants") is None:
        reader.issue("tenants", "at least one tenant is required", "see config/example.yaml")
    _check_unique(reader, "clients", [c.name for c in clients], "name")
    _check_unique(reader, "users", [u.username for u in users], "username")
    if not users and any(listener.auth != "off" for listener in smtp.listeners):
        reader.issue(
            "users",
            "a listener offers SMTP AUTH but no users are configured",
            "add users (passwords from: smtp-graph-gateway hash-password)",
        )
    _check_unique(reader, "tenants", [t.name for t in tenants], "name")
    _check_domains(reader, tenants)
    spool = _read_spool(reader, root.get("spool"), smtp.max_message_size)
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
    return Config(
        smtp=smtp,
        clients=clients if root.get("clients") is not None else (LOOPBACK_CLIENT,),
        users=users,
        tenants=tenants,
        spool=spool,
        delivery=_read_delivery(reader, root.get("delivery")),
        http=_read_http(reader, root.get("http")),
        logging=_read_logging(reader, root.get("logging")),
        drain_timeout=reader.duration(shutdown, "drain_timeout", "shutdown", 30.0),
        routing=_read_routing(reader, root.get("routing"), tenants),
        proxy=_read_proxy(reader, root),
        source=source,
    )


def _read_tls_files(reader: Reader, value: object, path: str) -> TlsFiles | None:
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


def _read_smtp(reader: Reader, value: object, tls_default: TlsFiles | None) -> SmtpSettings:
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
    _check_unique(reader, "smtp.listeners", [listener.name for listener in listeners], "name")
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
    )


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


def _read_senders(reader: Reader, node: Mapping[str, Any], path: str) -> tuple[str, ...]:
    senders = reader.string_list(node, "senders", path)
    for index, sender in enumerate(senders):
        valid = sender == "*" or (
            sender.count("@") == 1 and sender.rsplit("@", 1)[1] and " " not in sender
        )
        if not valid:
            reader.issue(
                join(join(path, "senders"), index),
                f"not a sender pattern: {sender!r}",
                "use an address, *@domain or *",
            )
    if "senders" not in node:
        reader.issue(
            join(path, "senders"),
            "is required",
            "list the addresses this identity may send as (address, *@domain or *)",
        )
    return tuple(sender.lower() for sender in senders)


def _read_client(reader: Reader, value: object, path: str) -> Client | None:
    node = reader.mapping(
        value, path, ("name", "networks", "senders", "send_as", "recipients", "reply_to_sender")
    )
    if node is None:
        return None
    name = reader.required_string(node, "name", path, "give each client a name for the logs")
    send_as = _read_mailbox(reader, node, "send_as", path)
    networks = reader.networks(node, "networks", path)
    if not networks:
        reader.issue(
            join(path, "networks"),
            "at least one network is required",
            "e.g. networks: [192.168.10.0/24]",
        )
    return Client(
        name,
        networks,
        _read_senders(reader, node, path),
        send_as,
        _read_recipients(reader, node, path),
        reader.boolean(node, "reply_to_sender", path, True),
    )


def _read_user(reader: Reader, value: object, path: str) -> User | None:
    node = reader.mapping(
        value,
        path,
        (
            "username",
            "password_hash",
            "password_hash_file",
            "senders",
            "send_as",
            "recipients",
            "reply_to_sender",
        ),
    )
    if node is None:
        return None
    username = reader.required_string(node, "username", path, "the SMTP AUTH login name")
    password_hash = reader.secret(node, "password_hash", path, required=True, what="password hash")
    if password_hash is not None and not password_hash.reveal().startswith("$scrypt$"):
        reader.issue(
            join(path, "password_hash"),
            "is not a password hash",
            "create one with: smtp-graph-gateway hash-password",
        )
    senders = _read_senders(reader, node, path)
    if password_hash is None:
        return None
    return User(
        username,
        password_hash,
        senders,
        _read_mailbox(reader, node, "send_as", path),
        _read_recipients(reader, node, path),
        reader.boolean(node, "reply_to_sender", path, True),
    )


def _read_recipients(reader: Reader, node: Mapping[str, Any], path: str) -> tuple[str, ...]:
    patterns = reader.string_list(node, "recipients", path)
    for index, pattern in enumerate(patterns):
        if pattern != "*" and (pattern.count("@") != 1 or " " in pattern):
            reader.issue(
                join(join(path, "recipients"), index),
                f"not a recipient pattern: {pattern!r}",
                "use an address, *@domain or *",
            )
    return tuple(pattern.lower() for pattern in patterns)


def _read_tenant(reader: Reader, value: object, path: str) -> Tenant | None:
    keys = (
        "name",
        "tenant_id",
        "client_id",
        "client_secret",
        "client_secret_file",
        "domains",
        "cloud",
        "login_endpoint",
        "graph_endpoint",
        "ca_file",
        "client_secret_expires",
        "priority",
        "send_as",
        "keep_from",
        "certificate",
        "mode",
        "large_messages",
        "max_message_size",
        "auth",
        "account",
        "senders",
        "token_cache",
        "transport",
        "smtp_endpoint",
    )
    node = reader.mapping(value, path, keys)
    if node is None:
        return None
    name = reader.required_string(node, "name", path, "give each tenant a short name")
    auth = AuthKind(reader.choice(node, "auth", path, [a.value for a in AuthKind], "app"))
    delegated = auth is AuthKind.DELEGATED
    if delegated:
        # organizations, consumers (personal Microsoft accounts) or one tenant's ID
        tenant_id = reader.string(node, "tenant_id", path) or "consumers"
    else:
        tenant_id = reader.required_string(
            node, "tenant_id", path, "the Directory (tenant) ID from the app's Overview page"
        )
    client_id = reader.required_string(
        node, "client_id", path, "the Application (client) ID from the app's Overview page"
    )
    certificate = _read_certificate(reader, node.get("certificate"), join(path, "certificate"))
    has_secret = "client_secret" in node or "client_secret_file" in node
    secret = reader.secret(
        node,
        "client_secret",
        path,
        required=certificate is None and not delegated,
        what="client secret",
    )
    if certificate is not None and has_secret:
        reader.issue(
            join(path, "certificate"),
            "both a certificate and a client secret are set",
            "keep one credential per tenant (a certificate is the safer choice)",
        )
    domains = tuple(domain.lower() for domain in reader.string_list(node, "domains", path))
    for index, domain in enumerate(domains):
        if not _DOMAIN.match(domain):
            reader.issue(
                join(join(path, "domains"), index),
                f"not a domain: {domain!r}",
                "use contoso.com or *.contoso.com",
            )
    if not domains:
        reader.issue(
            join(path, "domains"),
            "at least one domain is required",
            "list the sender domains this tenant sends for",
        )
    cloud = Cloud(reader.choice(node, "cloud", path, [c.value for c in Cloud], "global"))
    login_default, graph_default = CLOUD_ENDPOINTS[cloud]
    login = _https_url(reader, node, "login_endpoint", path, login_default)
    graph = _https_url(reader, node, "graph_endpoint", path, graph_default + "/v1.0")
    ca_file = reader.existing_file(node, "ca_file", path)
    expires = _read_date(reader, node, "client_secret_expires", path)
    sign_in = _read_sign_in(reader, node, path, delegated=delegated, cloud=cloud)
    if sign_in is None or (secret is None and certificate is None and not delegated):
        return None
    priority = reader.integer(node, "priority", path, 0, minimum=0, maximum=1000)
    send_as = _read_mailbox(reader, node, "send_as", path)
    keep_from = reader.boolean(node, "keep_from", path, False)
    if keep_from and not send_as:
        reader.issue(
            join(path, "keep_from"),
            "keep_from needs send_as",
            "keep_from keeps the original From while sending as the send_as mailbox",
        )
    mode = SubmissionMode(
        reader.choice(node, "mode", path, [m.value for m in SubmissionMode], "auto")
    )
    large = reader.boolean(node, "large_messages", path, False)
    largest = reader.size(
        node, "max_message_size", path, EXCHANGE_DEFAULT_MAX_SEND, minimum=MIME_SUBMISSION_LIMIT
    )
    if largest > LARGE_MESSAGE_LIMIT:
        reader.issue(
            join(path, "max_message_size"),
            f"{format_size(largest)} is more than Graph takes",
            "upload sessions carry at most 150 MiB per message",
        )
    return Tenant(
        name,
        tenant_id,
        client_id,
        secret,
        domains,
        cloud,
        login,
        graph,
        ca_file,
        expires,
        priority,
        send_as,
        keep_from,
        certificate,
        mode,
        large,
        min(largest, LARGE_MESSAGE_LIMIT),
        **sign_in,
    )


def _read_sign_in(
    reader: Reader, node: Mapping[str, Any], path: str, *, delegated: bool, cloud: Cloud
) -> dict[str, Any] | None:
    """The delegated sign-in and transport keys of a tenant (None when they are unusable)."""
    fields: dict[str, Any] = {"auth": AuthKind.DELEGATED if delegated else AuthKind.APP}
    transport = Transport(
        reader.choice(node, "transport", path, [t.value for t in Transport], "graph")
    )
    fields["transport"] = transport
    endpoint = _read_endpoint(reader, node, path, cloud, needed=transport is Transport.SMTP_OAUTH)
    if endpoint is not None:
        fields["smtp_endpoint"] = endpoint
    delegated_keys = [key for key in ("account", "senders", "token_cache") if key in node]
    if not delegated:
        for key in delegated_keys:
            reader.issue(join(path, key), "only for auth: delegated", "remove it, or set auth")
        return fields
    if "client_secret" in node or "client_secret_file" in node or "certificate" in node:
        reader.issue(
            join(path, "auth"),
            "a delegated tenant signs in a user, not the app: it has no secret or certificate",
            "remove the credential (register the app as a public client), or use auth: app",
        )
    account = _read_mailbox(reader, node, "account", path)
    if not account:
        if "account" not in node:
            reader.issue(
                join(path, "account"),
                "a delegated tenant needs the account that signs in",
                "e.g. account: scanner@contoso.com (then run `smtp-graph-gateway login`)",
            )
        return None
    fields["account"] = account
    senders = []
    for index, text in enumerate(reader.string_list(node, "senders", path)):
        address = parse_mailbox(text)
        if address is None:
            reader.issue(join(join(path, "senders"), index), f"not an address: {text!r}")
        else:
            senders.append(str(address).lower())
    fields["senders"] = tuple(senders)
    cache = reader.string(node, "token_cache", path)
    fields["token_cache"] = reader.resolve_path(cache) if cache else None
    return fields


def _read_endpoint(
    reader: Reader, node: Mapping[str, Any], path: str, cloud: Cloud, *, needed: bool
) -> tuple[str, int] | None:
    """`smtp_endpoint: host:port`, by default the cloud's Exchange Online submission host."""
    text = reader.string(node, "smtp_endpoint", path)
    if text is None:
        return SMTP_ENDPOINTS[cloud.value]
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        reader.issue(join(path, "smtp_endpoint"), f"not host:port: {text!r}",
                     "e.g. smtp.office365.com:587")
        return None
    return host.strip("[]"), int(port)


def _read_certificate(reader: Reader, value: object, path: str) -> CertificateCredential | None:
    if value is None:
        return None
    keys = ("cert_file", "key_file", "pfx_file", "key_password", "key_password_file", "send_x5c")
    node = reader.mapping(value, path, keys)
    if node is None:
        return None
    files = {
        key: reader.existing_file(node, key, path) for key in ("cert_file", "key_file", "pfx_file")
    }
    if "pfx_file" in node and ("cert_file" in node or "key_file" in node):
        reader.issue(path, "give either pfx_file or cert_file + key_file", "not both")
    elif "pfx_file" not in node and not ("cert_file" in node and "key_file" in node):
        reader.issue(
            path,
            "cert_file and key_file (PEM) or pfx_file are required",
            "create a pair with: smtp-graph-gateway cert create",
        )
    password = reader.secret(node, "key_password", path, required=False, what="key or PFX password")
    return CertificateCredential(
        files["cert_file"],
        files["key_file"],
        files["pfx_file"],
        password,
        reader.boolean(node, "send_x5c", path, False),
    )


def _read_mailbox(reader: Reader, node: Mapping[str, Any], key: str, path: str) -> str:
    text = reader.string(node, key, path) or ""
    if not text:
        return ""
    address = parse_mailbox(text)
    if address is None:
        reader.issue(
            join(path, key), f"not a mailbox address: {text!r}", "e.g. scanner@contoso.com"
        )
        return ""
    return str(address)


def _read_routing(reader: Reader, value: object, tenants: tuple[Tenant, ...]) -> RoutingSettings:
    node = reader.mapping(value, "routing", ("default_tenant", "addresses", "send_as")) or {}
    names = {tenant.name for tenant in tenants}
    default = reader.string(node, "default_tenant", "routing") or ""
    if default and default not in names:
        reader.issue(
            "routing.default_tenant",
            f"no tenant named {default!r}",
            "use the name of one of the tenants",
        )
    addresses, modes = _read_address_routes(reader, node.get("addresses"), names)
    send_as: list[tuple[str, str]] = []
    for domain, mailbox in _pairs(reader, node.get("send_as"), "routing.send_as"):
        address = parse_mailbox(mailbox)
        if address is None:
            reader.issue(
                join("routing.send_as", domain),
                f"not a mailbox address: {mailbox!r}",
                "e.g. scanner@contoso.com",
            )
        else:
            send_as.append((domain.lower(), str(address)))
    return RoutingSettings(
        default_tenant=default,
        addresses=tuple(addresses),
        send_as=tuple(send_as),
        modes=tuple(modes),
    )


def _read_address_routes(
    reader: Reader, entries: object, names: set[str]
) -> tuple[list[tuple[str, str]], list[tuple[str, SubmissionMode]]]:
    """`routing.addresses`: sender → tenant name, or sender → {tenant, mode}."""
    addresses: list[tuple[str, str]] = []
    modes: list[tuple[str, SubmissionMode]] = []
    if entries is not None and not isinstance(entries, dict):
        reader.issue("routing.addresses", "expected a mapping", "sender@domain: tenant")
        entries = None
    for sender, target in (entries or {}).items():
        where = join("routing.addresses", str(sender))
        address = parse_mailbox(str(sender))
        if address is None:
            reader.issue(where, "not an address", "map sender addresses to tenant names")
            continue
        key = str(address).lower()
        if isinstance(target, dict):
            route = reader.mapping(target, where, ("tenant", "mode")) or {}
            tenant = reader.string(route, "tenant", where) or ""
            if "mode" in route:
                modes.append((key, SubmissionMode(reader.choice(
                    route, "mode", where, [m.value for m in SubmissionMode], "auto"
                ))))
            if not tenant and "mode" not in route:
                reader.issue(where, "nothing to override", "give a tenant, a mode or both")
        elif isinstance(target, str):
            tenant = target
        else:
            reader.issue(where, "expected a tenant name or a mapping", "tenant: NAME, mode: json")
            continue
        if tenant and tenant not in names:
            reader.issue(where, f"no tenant named {tenant!r}", "use the name of one of the tenants")
        elif tenant:
            addresses.append((key, tenant))
    return addresses, modes


def _pairs(reader: Reader, value: object, path: str) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, dict):
        reader.issue(path, "expected a mapping", "key: value pairs")
        return []
    return [(str(key), str(item)) for key, item in value.items()]


def _read_date(
    reader: Reader, node: Mapping[str, Any], key: str, path: str
) -> datetime.date | None:
    value = node.get(key)
    if value is None or isinstance(value, datetime.date):
        return value
    try:
        return datetime.date.fromisoformat(str(value))
    except ValueError:
        reader.issue(
            join(path, key),
            f"not a date: {value!r}",
            "write it as YYYY-MM-DD (the Expires column under Certificates & secrets)",
        )
        return None


def _https_url(reader: Reader, node: Mapping[str, Any], key: str, path: str, default: str) -> str:
    url = reader.string(node, key, path, default) or default
    if not re.match(r"^https://[^/\s]+(/\S*)?$", url):
        reader.issue(
            join(path, key),
            f"not an https URL: {url!r}",
            "Entra ID and Graph are only reached over https",
        )
        return default
    return url.rstrip("/")


def _read_spool(reader: Reader, value: object, max_message_size: int) -> SpoolSettings:
    node = reader.mapping(value, "spool", ("directory", "min_free_space", "max_messages")) or {}
    directory = reader.required_string(
        node, "directory", "spool", "e.g. /var/lib/smtp-graph-gateway/spool"
    )
    return SpoolSettings(
        directory=reader.resolve_path(directory or "spool"),
        # Postfix's queue_minfree rule: room for one more message of the largest size, and half.
        min_free_space=reader.size(node, "min_free_space", "spool", int(1.5 * max_message_size)),
        max_messages=reader.integer(node, "max_messages", "spool", 100_000, minimum=1),
    )


def _read_delivery(reader: Reader, value: object) -> DeliverySettings:
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


def _read_http(reader: Reader, value: object) -> HttpSettings | None:
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


def _read_logging(reader: Reader, value: object) -> LoggingSettings:
    node = reader.mapping(value, "logging", ("level", "format")) or {}
    return LoggingSettings(
        level=reader.choice(
            node, "level", "logging", ("debug", "info", "warning", "error"), "info"
        ),
        format=reader.choice(node, "format", "logging", ("auto", "json", "console"), "auto"),
    )


def _check_unique(reader: Reader, path: str, names: list[str], key: str) -> None:
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name and name.lower() in seen:
            reader.issue(join(join(path, index), key), f"duplicate {key} {name!r}")
        seen.add(name.lower())


def _check_domains(reader: Reader, tenants: tuple[Tenant, ...]) -> None:
    """A domain may be listed by several tenants (failover routes) only at distinct priorities."""
    owner: dict[tuple[str, int], str] = {}
    for tenant in tenants:
        for domain in tenant.domains:
            other = owner.get((domain, tenant.priority))
            if other is not None and other != tenant.name:
                reader.issue(
                    f"tenants.{tenant.name}.domains",
                    f"domain {domain!r} is also listed by tenant {other!r} at the same priority",
                    "give failover routes different priorities (lower is tried first)",
                )
            owner[(domain, tenant.priority)] = tenant.name


def _read_proxy(reader: Reader, root: Mapping[str, Any]) -> str:
    proxy = reader.string(root, "proxy", "") or ""
    if proxy and not re.match(r"^https?://[^/\s]+/?$", proxy):
        reader.issue("proxy", f"not a proxy URL: {proxy!r}", "e.g. http://proxy.contoso.com:3128")
        return ""
    return proxy.rstrip("/")
