"""Pure routing: which tenants send a sender's mail, in which order, and as which mailbox.

Per-address overrides win, then the sender's exact domain, then the longest wildcard
(`*.contoso.com` matches subdomains only), then the default tenant. Several tenants (app
registrations) may list the same domain at different priorities: they are failover routes,
tried lowest priority first. The mailbox to send as is, in order: the client's or user's
`send_as`, the domain's `routing.send_as`, the tenant's `send_as`, else the sender itself.
Each route also says how its mail goes to Graph (`mode`, from the tenant or a per-address
override) and so the largest message it can take. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.addresses import Address
from gateway.config import (
    MIME_SUBMISSION_LIMIT,
    RoutingSettings,
    SmtpSettings,
    SubmissionMode,
    Tenant,
)
from gateway.config.units import format_size


@dataclass(frozen=True, slots=True)
class Route:
    """One way to deliver a sender's mail: the tenant and the mailbox to send as."""

    tenant: Tenant
    mailbox: str
    rewrite_from: bool = False  # the header From becomes `mailbox` (keeping the display name)
    reply_to_sender: bool = True  # and the original From goes to Reply-To
    mode: SubmissionMode = SubmissionMode.AUTO

    @property
    def graph_mailbox(self) -> str:
        """The mailbox in Graph URLs: "" for /me (a delegated sign-in), else `mailbox`."""
        return "" if self.tenant.delegated else self.mailbox

    def may_send_as(self, sender: Address) -> bool:
        """A delegated route sends only as its account and the addresses it may send as."""
        if not self.tenant.delegated:
            return True
        address = str(sender).lower()
        return address == self.tenant.account.lower() or address in self.tenant.senders

    @property
    def large(self) -> bool:
        """Whether messages too big for one request may take the draft + upload path."""
        return self.tenant.large_messages and self.mode is not SubmissionMode.MIME

    @property
    def size_limit(self) -> int:
        """The largest message this route delivers."""
        return self.tenant.max_message_size if self.large else MIME_SUBMISSION_LIMIT

    def size_reason(self) -> str:
        """Why the limit is what it is, and what would raise it."""
        if self.large:
            return (
                f"tenant {self.tenant.name!r} takes messages up to "
                f"{format_size(self.size_limit)} (its max_message_size, which must not exceed "
                "the mailboxes' MaxSendSize in Exchange)"
            )
        if self.tenant.large_messages:
            return (
                f"mode 'mime' sends each message in one Graph request, which carries at most "
                f"{format_size(MIME_SUBMISSION_LIMIT)}; use mode 'auto' for larger messages"
            )
        return (
            f"one Graph request carries at most {format_size(MIME_SUBMISSION_LIMIT)}; set "
            f"large_messages: true on tenant {self.tenant.name!r} (needs the Mail.ReadWrite "
            "application permission) to take messages up to 150 MB"
        )


class Router:
    """Looks up tenants by sender."""

    def __init__(self, tenants: tuple[Tenant, ...], routing: RoutingSettings | None = None) -> None:
        self._routing = routing or RoutingSettings()
        self._by_name = {tenant.name: tenant for tenant in tenants}
        self._exact: dict[str, list[Tenant]] = {}
        self._wildcards: dict[str, list[Tenant]] = {}
        for tenant in tenants:
            for domain in tenant.domains:
                table = self._wildcards if domain.startswith("*.") else self._exact
                table.setdefault(domain.removeprefix("*"), []).append(tenant)
        for table in (self._exact, self._wildcards):
            for listed in table.values():
                listed.sort(key=lambda tenant: tenant.priority)
        self._suffixes = sorted(self._wildcards, key=len, reverse=True)
        self._addresses = dict(self._routing.addresses)
        self._send_as = dict(self._routing.send_as)
        self._modes = dict(self._routing.modes)

    def tenants_for(self, address: Address) -> list[Tenant]:
        """The tenants that may send for `address`, in the order to try them."""
        override = self._addresses.get(str(address).lower())
        if override is not None:
            return [self._by_name[override]]
        domain = address.domain.lower()
        if domain in self._exact:
            return list(self._exact[domain])
        for suffix in self._suffixes:
            if domain.endswith(suffix):
                return list(self._wildcards[suffix])
        default = self._by_name.get(self._routing.default_tenant)
        return [default] if default is not None else []

    def tenant_for(self, domain: str) -> Tenant | None:
        """The first tenant serving `domain`, or None."""
        tenants = self.tenants_for(Address("x", domain))
        return tenants[0] if tenants else None

    def routes(
        self, sender: Address, send_as: str = "", *, reply_to_sender: bool = True
    ) -> list[Route]:
        """Every route for an envelope sender, first choice first (empty: refuse it)."""
        found = []
        for tenant in self.tenants_for(sender):
            if tenant.delegated:  # always the signed-in account (/me); see `may_send_as`
                found.append(Route(tenant, tenant.account, False, reply_to_sender, tenant.mode))
                continue
            mailbox = (
                send_as or self._send_as.get(sender.domain.lower()) or tenant.send_as or str(sender)
            )
            rewrite = mailbox.lower() != str(sender).lower() and not tenant.keep_from
            mode = self._modes.get(str(sender).lower(), tenant.mode)
            found.append(Route(tenant, mailbox, rewrite, reply_to_sender, mode))
        return found

    def route(self, sender: Address, send_as: str = "") -> Route | None:
        """The first route for an envelope sender, or None when no tenant serves it."""
        routes = self.routes(sender, send_as)
        return routes[0] if routes else None


def advertised_size(smtp: SmtpSettings, tenants: tuple[Tenant, ...],
                    routing: RoutingSettings | None = None) -> int:
    """The SIZE to advertise: the configured maximum, capped by what the most capable route can
    deliver (each sender's own limit is applied at MAIL FROM and DATA)."""
    modes = [mode for _address, mode in (routing.modes if routing else ())]
    largest = max(
        (
            Route(tenant, "", mode=mode).size_limit
            for tenant in tenants
            for mode in {tenant.mode, *modes}
        ),
        default=MIME_SUBMISSION_LIMIT,
    )
    return min(smtp.max_message_size, largest)
