"""Warnings for values that load but are probably mistakes, found while reading the config.

They never stop the gateway (a test setup or an unusual tenant may mean them), but `serve`
logs each one at start and reload, and `check` shows them: an identifier that is not the GUID
the Entra portal shows, a client secret that is the secret's ID rather than its value, and a
sender no tenant can deliver for (its mail would be refused at MAIL FROM).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from gateway.config.model import Client, RoutingSettings, Tenant, User
from gateway.config.reader import Reader, join
from gateway.config.secrets import Secret

_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)
_DOMAIN = re.compile(r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$", re.IGNORECASE)
# What a delegated sign-in may use instead of one tenant: any work account, personal accounts.
_DELEGATED_AUTHORITIES = ("organizations", "consumers", "common")
_OVERVIEW = "copy it from the app registration's Overview page in the Entra admin center"


def is_guid(text: str) -> bool:
    """Whether `text` is written as a GUID (`00000000-0000-0000-0000-000000000000`)."""
    return bool(_GUID.match(text))


def lint_identifiers(
    reader: Reader,
    path: str,
    *,
    tenant_id: str,
    client_id: str,
    secret: Secret | None,
    delegated: bool,
) -> None:
    """A tenant's IDs as the portal shows them, and a secret that is not a Secret ID."""
    if client_id and not is_guid(client_id):
        reader.warn(
            join(path, "client_id"),
            f"{client_id!r} is not a GUID",
            f"the Application (client) ID looks like 00000000-0000-0000-0000-000000000000: "
            f"{_OVERVIEW}",
        )
    allowed = "a GUID or a domain name"
    keywords = delegated and tenant_id.lower() in _DELEGATED_AUTHORITIES
    if tenant_id and not (is_guid(tenant_id) or _DOMAIN.match(tenant_id) or keywords):
        if delegated:
            allowed += " (or organizations, consumers)"
        reader.warn(
            join(path, "tenant_id"),
            f"{tenant_id!r} is not {allowed}",
            f"the Directory (tenant) ID: {_OVERVIEW}",
        )
    if secret is not None and is_guid(secret.reveal()):
        reader.warn(
            join(path, "client_secret"),
            "looks like a Secret ID (a GUID), not the secret's Value",
            "under Certificates & secrets, copy the Value column (shown only right after the "
            "secret is created; create a new secret if it is hidden); Entra ID answers "
            "AADSTS7000215 to a Secret ID",
        )


def lint_senders(
    reader: Reader,
    identities: Sequence[tuple[str, Client | User]],
    tenants: Sequence[Tenant],
    routing: RoutingSettings,
) -> None:
    """Sender patterns whose domain no tenant serves and no default tenant catches: the mail
    of such a sender is refused with `550 5.7.1` at MAIL FROM."""
    if routing.default_tenant or not tenants:
        return
    overrides = {address for address, _tenant in routing.addresses}
    for path, identity in identities:
        for index, pattern in enumerate(identity.senders):
            if pattern == "*" or "@" not in pattern or pattern in overrides:
                continue
            domain = pattern.rsplit("@", 1)[1]
            if not any(_serves(tenant, domain) for tenant in tenants):
                reader.warn(
                    join(join(path, "senders"), index),
                    f"no tenant serves {domain!r}: mail from {pattern} would be refused "
                    "at MAIL FROM (550 5.7.1)",
                    "add the domain to a tenant's domains, or set routing.default_tenant",
                )


def _serves(tenant: Tenant, domain: str) -> bool:
    """Whether `tenant` lists `domain` (`*.contoso.com` covers subdomains only)."""
    return any(
        listed == domain or (listed.startswith("*.") and domain.endswith(listed[1:]))
        for listed in tenant.domains
    )
