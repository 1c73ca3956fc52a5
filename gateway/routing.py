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

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.addresses import Address, parse_mailbox
from gateway.config import (
    LARGE_MESSAGE_LIMIT,
    MIME_SUBMISSION_LIMIT,
    Config,
    RoutingSettings,
    SmtpSettings,
    SubmissionMode,
    Tenant,
)
from gateway.config.units import format_size
from gateway.queue.model import Envelope


@dataclass(frozen=True, slots=True)
class Route:
    """One way to deliver a sender's mail: the tenant and the mailbox to send as."""

    tenant: Tenant
    mailbox: str
    rewrite_from: bool = False  # the header From becomes `mailbox` (keeping the display name)
    reply_to_sender: bool = True  # and the original From goes to Reply-To
    mode: SubmissionMode = SubmissionMode.AUTO
    save_to_sent_items: bool = True  # False: Graph keeps no copy in the mailbox's Sent Items

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
                f"tenant {self.tenant.name!r} has large_messages: true, but mode 'mime' sends "
                "each message in one Graph request, which carries at most "
                f"{format_size(MIME_SUBMISSION_LIMIT)}; use mode 'auto' for larger messages"
            )
        return (
            f"one Graph request carries at most {format_size(MIME_SUBMISSION_LIMIT)}; set "
            f"large_messages: true on tenant {self.tenant.name!r} (needs the Mail.ReadWrite "
            f"application permission) to take messages up to {format_size(LARGE_MESSAGE_LIMIT)}"
        )


class Router:
    """Looks up tenants by sender."""

    def __init__(
        self,
        tenants: tuple[Tenant, ...],
        routing: RoutingSettings | None = None,
        identities: Mapping[str, tuple[str, bool]] | None = None,
        sent_items: Mapping[str, bool] | None = None,
    ) -> None:
        # "client:NAME" / "user:NAME" → (send_as, reply_to_sender), for messages queued before
        # the identity was kept with them (see `routes_for`).
        self._identities = dict(identities or {})
        # "client:NAME" / "user:NAME" → their save_to_sent_items, where they set it.
        self._identity_sent_items = dict(sent_items or {})
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
        self._sent_items = dict(self._routing.sent_items)

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
        self,
        sender: Address,
        send_as: str = "",
        *,
        reply_to_sender: bool = True,
        identity: str = "",
    ) -> list[Route]:
        """Every route for an envelope sender, first choice first (empty: refuse it).
        `identity` ("client:NAME" or "user:NAME") is who sent it, for its own settings."""
        found = []
        key = str(sender).lower()
        for tenant in self.tenants_for(sender):
            save = self._sent_items.get(
                key, self._identity_sent_items.get(identity, tenant.save_to_sent_items)
            )
            if tenant.delegated:  # always the signed-in account (/me); see `may_send_as`
                found.append(
                    Route(tenant, tenant.account, False, reply_to_sender, tenant.mode, save)
                )
                continue
            mailbox = (
                send_as or self._send_as.get(sender.domain.lower()) or tenant.send_as or str(sender)
            )
            rewrite = mailbox.lower() != key and not tenant.keep_from
            mode = self._modes.get(key, tenant.mode)
            found.append(Route(tenant, mailbox, rewrite, reply_to_sender, mode, save))
        return found

    def routes_for(self, envelope: Envelope) -> list[Route]:
        """Every route for a queued message, first choice first: the one routing rule for all
        of them. The gateway's own notices go as their postmaster mailbox (routed by its
        domain); every other message (a split copy included) by its sender, as the identity
        policy resolved at acceptance. Records queued before the identity was kept are routed
        with the client's or user's identity of the current configuration."""
        if envelope.notice_from:
            address = parse_mailbox(envelope.notice_from)
            tenants = self.tenants_for(address) if address else []
            if not tenants:
                return []
            save = tenants[0].save_to_sent_items
            return [Route(tenants[0], envelope.notice_from, save_to_sent_items=save)]
        sender = parse_mailbox(envelope.mail_from)
        if sender is None:
            return []
        send_as, reply_to_sender = envelope.send_as, envelope.reply_to_sender
        key = f"user:{envelope.user}" if envelope.user else f"client:{envelope.client}"
        if not envelope.identity_known:
            send_as, reply_to_sender = self._identities.get(key, ("", True))
        return self.routes(sender, send_as, reply_to_sender=reply_to_sender, identity=key)

    def route(self, sender: Address, send_as: str = "") -> Route | None:
        """The first route for an envelope sender, or None when no tenant serves it."""
        routes = self.routes(sender, send_as)
        return routes[0] if routes else None


def identities(config: Config) -> dict[str, tuple[str, bool]]:
    """The identities of a configuration's clients and users, as `Router` takes them."""
    found = {f"client:{c.name}": (c.send_as, c.reply_to_sender) for c in config.clients}
    found.update({f"user:{u.username}": (u.send_as, u.reply_to_sender) for u in config.users})
    return found


def sent_items(config: Config) -> dict[str, bool]:
    """The clients' and users' own save_to_sent_items, as `Router` takes them."""
    found = {
        f"client:{c.name}": c.save_to_sent_items
        for c in config.clients
        if c.save_to_sent_items is not None
    }
    found.update(
        {
            f"user:{u.username}": u.save_to_sent_items
            for u in config.users
            if u.save_to_sent_items is not None
        }
    )
    return found


def router_for(config: Config) -> Router:
    """The router of a whole configuration."""
    return Router(config.tenants, config.routing, identities(config), sent_items(config))


def advertised_size(
    smtp: SmtpSettings, tenants: tuple[Tenant, ...], routing: RoutingSettings | None = None
) -> int:
    """The SIZE to advertise: the configured maximum, capped by what the most capable route can
    deliver (each sender's own limit is applied at MAIL FROM and DATA)."""
    route = _most_capable(tenants, routing)
    return min(smtp.max_message_size, route.size_limit if route else MIME_SUBMISSION_LIMIT)


def size_cap_reason(tenants: tuple[Tenant, ...], routing: RoutingSettings | None = None) -> str:
    """Why no route delivers more than `advertised_size` (for when that is less than
    `smtp.max_message_size`): the most capable route's own reason, and what would raise it."""
    route = _most_capable(tenants, routing)
    if route is None:
        return f"one Graph request carries at most {format_size(MIME_SUBMISSION_LIMIT)}"
    return route.size_reason()


def _most_capable(tenants: tuple[Tenant, ...], routing: RoutingSettings | None) -> Route | None:
    """The route (tenant and mode) that delivers the largest messages."""
    modes = [mode for _address, mode in (routing.modes if routing else ())]
    routes = [Route(tenant, "", mode=mode) for tenant in tenants for mode in {tenant.mode, *modes}]
    return max(routes, key=lambda route: route.size_limit, default=None)
