"""Pure routing: which tenant sends for a sender's domain.

Exact domains win over wildcards; among wildcards (`*.contoso.com`, matching subdomains only)
the longest suffix wins. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.addresses import Address
from gateway.config import Tenant


@dataclass(frozen=True, slots=True)
class Route:
    """Where one sender's mail goes: the tenant and the mailbox to send as."""

    tenant: Tenant
    mailbox: str


class Router:
    """Looks up tenants by sender domain."""

    def __init__(self, tenants: tuple[Tenant, ...]) -> None:
        self._exact: dict[str, Tenant] = {}
        self._wildcards: list[tuple[str, Tenant]] = []
        for tenant in tenants:
            for domain in tenant.domains:
                if domain.startswith("*."):
                    self._wildcards.append((domain[1:], tenant))
                else:
                    self._exact[domain] = tenant
        self._wildcards.sort(key=lambda item: len(item[0]), reverse=True)

    def tenant_for(self, domain: str) -> Tenant | None:
        """The tenant serving `domain`, or None."""
        domain = domain.lower()
        exact = self._exact.get(domain)
        if exact is not None:
            return exact
        for suffix, tenant in self._wildcards:
            if domain.endswith(suffix):
                return tenant
        return None

    def route(self, sender: Address) -> Route | None:
        """The route for an envelope sender, or None when no tenant serves its domain."""
        tenant = self.tenant_for(sender.domain)
        if tenant is None:
            return None
        return Route(tenant=tenant, mailbox=str(sender))
