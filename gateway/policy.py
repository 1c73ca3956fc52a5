"""Pure SMTP policy: which configured client a peer is, and what it may send as.

Functions over config and plain values; they return the decision and raise `PolicyError`
carrying the SMTP reply. No sockets, no clocks.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from gateway import replies
from gateway.addresses import Address, parse_mailbox, sender_matches
from gateway.config import MIME_SUBMISSION_LIMIT, Client, User, format_size
from gateway.errors import PolicyError
from gateway.mime.headers import full_header_addresses, header_values, quick_addresses
from gateway.routing import Route, Router


def client_for(peer_ip: str, clients: tuple[Client, ...]) -> Client | None:
    """The client whose network contains `peer_ip`, most specific network first."""
    try:
        address = ipaddress.ip_address(peer_ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    best: tuple[int, Client] | None = None
    for client in clients:
        for network in client.networks:
            matches = address.version == network.version and address in network
            if matches and (best is None or network.prefixlen > best[0]):
                best = (network.prefixlen, client)
    return best[1] if best else None


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is sending: an SMTP AUTH user, else the client matched by network."""

    kind: str  # "client" | "user"
    name: str
    senders: tuple[str, ...]
    send_as: str = ""
    recipients: tuple[str, ...] = ()  # () = any recipient


def identity(client: Client | None, user: User | None) -> Identity:
    """The identity a session sends with: the authenticated user wins over its network."""
    if user is not None:
        return Identity("user", user.username, user.senders, user.send_as, user.recipients)
    if client is not None:
        return Identity("client", client.name, client.senders, client.send_as, client.recipients)
    return Identity("client", "unknown", ())


def check_sender(text: str, client: Client | Identity, router: Router) -> tuple[Address, Route]:
    """Validate MAIL FROM for an identity: syntax, allowed for it, served by a tenant."""
    if isinstance(client, Client):
        client = identity(client, None)
    if not text.strip("<> "):
        raise PolicyError(replies.NULL_SENDER_NOT_ALLOWED, "null sender (bounce) refused")
    address = parse_mailbox(text)
    if address is None:
        raise PolicyError(replies.BAD_SENDER_SYNTAX, "malformed sender address")
    if not sender_matches(address, client.senders):
        raise PolicyError(
            replies.SENDER_NOT_ALLOWED,
            f"{client.kind} {client.name!r} may not send as {address}; "
            f"add it to that {client.kind}'s senders",
        )
    route = router.route(address, client.send_as)
    if route is None:
        raise PolicyError(
            replies.NO_TENANT_FOR_SENDER,
            f"no tenant lists the domain {address.domain!r}; add it to a tenant's domains",
        )
    if not route.may_send_as(address):
        raise PolicyError(
            replies.SENDER_NOT_ALLOWED,
            f"tenant {route.tenant.name!r} signs in as {route.tenant.account} and sends only as "
            f"that account and its senders; add {address} to the tenant's senders if the "
            "account may send as it",
        )
    return address, route


def check_recipient(
    text: str, accepted: int, max_recipients: int, who: Identity | None = None
) -> Address:
    """Validate one RCPT TO: syntax, the per-message limit, the identity's allowed recipients."""
    if accepted >= max_recipients:
        raise PolicyError(
            replies.TOO_MANY_RECIPIENTS,
            f"more than {max_recipients} recipients; the client should send the rest separately",
        )
    address = parse_mailbox(text)
    if address is None:
        raise PolicyError(replies.BAD_RECIPIENT_SYNTAX, "malformed recipient address")
    if who is not None and who.recipients and not sender_matches(address, who.recipients):
        raise PolicyError(
            replies.RECIPIENT_NOT_ALLOWED,
            f"{who.kind} {who.name!r} may not send to {address}; see its recipients list",
        )
    return address


def check_header_senders(header_section: bytes, who: Identity) -> None:
    """Header From and Sender must name only addresses `who` may send as.

    Tricks that make a parser see another address than Exchange would (the CVE-2023-27043
    form `a@x)<b@y>`, an address in an encoded display name, folding, groups) are read with a
    strict reader first and the standard RFC 5322 parser otherwise; a header that parser finds
    defects in is refused outright.
    """
    for name, value in header_values(header_section, {"from", "sender"}):
        found = quick_addresses(value)
        if found is None:
            found, malformed = full_header_addresses(
                f"{name}: {value}\r\n\r\n".encode("utf-8", "surrogateescape"), (name,)
            )
            if malformed:
                raise PolicyError(
                    replies.SENDER_NOT_ALLOWED.with_text(f"Malformed {name.title()} header"),
                    f"{name.title()} header is malformed or ambiguous: {value[:120]!r}",
                )
        for text in sorted(found):
            address = parse_mailbox(text)
            if address is None or not sender_matches(address, who.senders):
                raise PolicyError(
                    replies.SENDER_NOT_ALLOWED.with_text(
                        f"{name.title()} header address not allowed for this client"
                    ),
                    f"header {name.title()} {text} is not among {who.kind} {who.name!r}'s "
                    "senders; add it, or give the client a send_as mailbox",
                )


_MULTIPART = re.compile(rb"(?im)^content-type:[ \t]*multipart/")


def check_structure(header_section: bytes, raw: bytes, *, max_header: int, max_parts: int) -> None:
    """Refuse a header section over `max_header` bytes or more than `max_parts` multipart
    containers (a bound on MIME nesting that needs no full parse)."""
    if len(header_section) > max_header:
        raise PolicyError(
            replies.HEADER_TOO_BIG,
            f"header section is {len(header_section)} bytes (smtp.max_header_size)",
        )
    parts = len(_MULTIPART.findall(raw))
    if parts > max_parts:
        raise PolicyError(
            replies.MIME_TOO_COMPLEX, f"{parts} multipart containers (smtp.max_multipart_parts)"
        )


def check_size(size: int, route: Route, *, signed: bool = False) -> None:
    """Refuse a message the sender's route cannot deliver: over its size limit, or signed or
    encrypted and too big for one MIME request (a conversion would break the signature)."""
    if size > route.size_limit:
        raise PolicyError(
            replies.too_big_for_sender(format_size(route.size_limit)),
            f"{size} bytes is over this route's limit: {route.size_reason()}",
        )
    if signed and size > MIME_SUBMISSION_LIMIT:
        raise PolicyError(
            replies.SIGNED_TOO_BIG,
            f"signed or encrypted messages go to Graph as one MIME request, which carries at "
            f"most {format_size(MIME_SUBMISSION_LIMIT)}; this one is {size} bytes",
        )
