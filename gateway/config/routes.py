"""The `routing` section: per-address tenants and modes, per-domain send-as mailboxes."""

from __future__ import annotations

from typing import Any

from gateway.addresses import parse_mailbox
from gateway.config.model import (
    RoutingSettings,
    SubmissionMode,
    Tenant,
)
from gateway.config.reader import Reader, join
from gateway.config.tenants import check_sent_items


def read_routing(reader: Reader, value: object, tenants: tuple[Tenant, ...]) -> RoutingSettings:
    """The `routing` section, checked against the tenants' names."""
    node = reader.mapping(value, "routing", ("default_tenant", "addresses", "send_as")) or {}
    names = {tenant.name for tenant in tenants}
    default = reader.string(node, "default_tenant", "routing") or ""
    if default and default not in names:
        reader.issue(
            "routing.default_tenant",
            f"no tenant named {default!r}",
            "use the name of one of the tenants",
        )
    addresses, modes, sent_items = _read_address_routes(reader, node.get("addresses"), tenants)
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
        sent_items=tuple(sent_items),
    )


def _read_address_routes(
    reader: Reader, entries: object, tenants: tuple[Tenant, ...]
) -> tuple[list[tuple[str, str]], list[tuple[str, SubmissionMode]], list[tuple[str, bool]]]:
    """`routing.addresses`: sender → tenant name, or sender → {tenant, mode,
    save_to_sent_items}."""
    by_name = {tenant.name: tenant for tenant in tenants}
    names = set(by_name)
    addresses: list[tuple[str, str]] = []
    modes: list[tuple[str, SubmissionMode]] = []
    sent_items: list[tuple[str, bool]] = []
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
            route = reader.mapping(target, where, ("tenant", "mode", "save_to_sent_items")) or {}
            tenant = reader.string(route, "tenant", where) or ""
            save = _read_sent_items(reader, route, where, by_name.get(tenant))
            if save is not None:
                sent_items.append((key, save))
            if "mode" in route:
                modes.append(
                    (
                        key,
                        SubmissionMode(
                            reader.choice(
                                route, "mode", where, [m.value for m in SubmissionMode], "auto"
                            )
                        ),
                    )
                )
            if not tenant and "mode" not in route and save is None:
                reader.issue(
                    where, "nothing to override", "give a tenant, a mode, save_to_sent_items"
                )
        elif isinstance(target, str):
            tenant = target
        else:
            hint = "tenant: NAME, mode: json"
            if isinstance(target, bool):  # `a@contoso.com: no` names a tenant called "no"
                hint = "YAML reads unquoted yes/no/on/off/true/false as true or false: quote it"
            reader.issue(where, "expected a tenant name or a mapping", hint)
            continue
        if tenant and tenant not in names:
            reader.issue(where, f"no tenant named {tenant!r}", "use the name of one of the tenants")
        elif tenant:
            addresses.append((key, tenant))
    return addresses, modes, sent_items


def _read_sent_items(
    reader: Reader, route: dict[str, Any], where: str, tenant: Tenant | None
) -> bool | None:
    """An address's own save_to_sent_items; false where its mode (its own or its tenant's) or
    its tenant's transport cannot honour it is a config error."""
    save = reader.optional_boolean(route, "save_to_sent_items", where)
    kept = save if save is not None or tenant is None else tenant.save_to_sent_items
    mode = str(route.get("mode") or (tenant.mode.value if tenant else "")).lower()
    if kept is False and mode in [m.value for m in SubmissionMode]:
        transport = tenant.transport.value if tenant else ""
        check_sent_items(reader, where, mode=SubmissionMode(mode), transport=transport)
    return save


def _pairs(reader: Reader, value: object, path: str) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, dict):
        reader.issue(path, "expected a mapping", "key: value pairs")
        return []
    return [(str(key), str(item)) for key, item in value.items()]
