"""The `tenants` section: app registrations, their credentials, clouds, endpoints and limits."""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from typing import Any

from gateway.addresses import parse_mailbox
from gateway.config.credentials import read_credential
from gateway.config.lint import lint_identifiers
from gateway.config.model import (
    CLOUD_ENDPOINTS,
    EXCHANGE_DEFAULT_MAX_SEND,
    HVE_ENDPOINT,
    LARGE_MESSAGE_LIMIT,
    MIME_SUBMISSION_LIMIT,
    SMTP_ENDPOINTS,
    AuthKind,
    Cloud,
    SubmissionMode,
    Tenant,
    Transport,
)
from gateway.config.reader import Reader, join, read_mailbox
from gateway.config.units import format_size

_DOMAIN = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$|^[a-z0-9-]+$")


def read_tenant(reader: Reader, value: object, path: str) -> Tenant | None:
    """One `tenants[]` entry, or None when it is unusable (the issues say why)."""
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
        "federated_token_file",
        "managed_identity",
        "save_to_sent_items",
        "hve",
    )
    node = reader.mapping(value, path, keys)
    if node is None:
        return None
    name = reader.required_string(node, "name", path, "give each tenant a short name")
    auth = AuthKind(reader.choice(node, "auth", path, [a.value for a in AuthKind], "app"))
    delegated = auth is AuthKind.DELEGATED
    credential = read_credential(reader, node, path, delegated=delegated)
    # A managed identity with no app of its own sends as itself: it has no client ID to give,
    # and its tenant is the one it lives in.
    identity_sends = "managed_identity" in node and "client_id" not in node and not delegated
    if delegated:
        # organizations, consumers (personal Microsoft accounts) or one tenant's ID
        tenant_id = reader.string(node, "tenant_id", path) or "consumers"
    elif identity_sends:
        tenant_id = reader.string(node, "tenant_id", path) or ""
    else:
        tenant_id = reader.required_string(
            node, "tenant_id", path, "the Directory (tenant) ID from the app's Overview page"
        )
    client_id = (
        ""
        if identity_sends
        else reader.required_string(
            node, "client_id", path, "the Application (client) ID from the app's Overview page"
        )
    )
    lint_identifiers(
        reader,
        path,
        tenant_id=tenant_id,
        client_id=client_id,
        secret=credential.secret,
        delegated=delegated,
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
    if expires is not None and (credential.federated_token_file or credential.managed_identity):
        reader.issue(
            join(path, "client_secret_expires"),
            "only a client secret has an expiry date to watch",
            "a federated token file or a managed identity has nothing to expire: remove it",
        )
    sign_in = _read_sign_in(reader, node, path, delegated=delegated, cloud=cloud)
    if sign_in is None or not credential.usable:
        return None
    priority = reader.integer(node, "priority", path, 0, minimum=0, maximum=1000)
    send_as = read_mailbox(reader, node, "send_as", path)
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
    save = reader.boolean(node, "save_to_sent_items", path, True)
    if not save:
        check_sent_items(reader, path, mode=mode, transport=node.get("transport"))
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
        credential.secret,
        domains,
        cloud,
        login,
        graph,
        ca_file,
        expires,
        priority,
        send_as,
        keep_from,
        credential.certificate,
        mode,
        large,
        min(largest, LARGE_MESSAGE_LIMIT),
        **sign_in,
        federated_token_file=credential.federated_token_file,
        managed_identity=credential.managed_identity,
        save_to_sent_items=save,
    )


def check_sent_items(reader: Reader, path: str, *, mode: SubmissionMode, transport: object) -> None:
    """`save_to_sent_items: false` where it cannot be honoured is a config error."""
    where = join(path, "save_to_sent_items")
    if mode is SubmissionMode.MIME:
        reader.issue(
            where,
            "mode: mime cannot skip Sent Items: Graph's MIME sendMail always keeps a copy (only "
            "the JSON request takes saveToSentItems)",
            "use mode: auto (JSON for these messages; signed or encrypted mail still goes as "
            "MIME and is kept) or json, or remove save_to_sent_items",
        )
    if str(transport).lower() == Transport.SMTP_OAUTH.value:
        reader.issue(
            where,
            "transport: smtp-oauth cannot skip Sent Items: SMTP has no way to ask Exchange not to "
            "keep a copy",
            "use transport: graph, or remove save_to_sent_items",
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
    is_hve = endpoint is not None and endpoint[0].lower() in _HVE_HOSTS
    fields["hve"] = reader.boolean(node, "hve", path, is_hve)
    if fields["hve"] and transport is not Transport.SMTP_OAUTH:
        reader.issue(
            join(path, "hve"),
            "High Volume Email is an SMTP endpoint: it needs transport: smtp-oauth",
            "set transport: smtp-oauth and smtp_endpoint: hve",
        )
    delegated_keys = [key for key in ("account", "senders", "token_cache") if key in node]
    if not delegated:
        for key in delegated_keys:
            reader.issue(join(path, key), "only for auth: delegated", "remove it, or set auth")
        return fields
    account = read_mailbox(reader, node, "account", path)
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


_HVE_HOSTS = frozenset({HVE_ENDPOINT[0]})  # another name for it: set `hve: true`


def _read_endpoint(
    reader: Reader, node: Mapping[str, Any], path: str, cloud: Cloud, *, needed: bool
) -> tuple[str, int] | None:
    """`smtp_endpoint: host:port`, by default the cloud's Exchange Online submission host."""
    text = reader.string(node, "smtp_endpoint", path)
    if text is None:
        return SMTP_ENDPOINTS[cloud.value]
    if text.strip().lower() == "hve":
        return HVE_ENDPOINT
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        reader.issue(
            join(path, "smtp_endpoint"), f"not host:port: {text!r}", "e.g. smtp.office365.com:587"
        )
        return None
    return host.strip("[]"), int(port)


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


def check_domains(reader: Reader, tenants: tuple[Tenant, ...]) -> None:
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
