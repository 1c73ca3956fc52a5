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
from gateway.mime.headers import header_values
from gateway.mime.mailboxes import MalformedHeaderError, control_character, read_mailboxes
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
    reply_to_sender: bool = True  # with send_as: the device's own From goes to Reply-To


def identity(client: Client | None, user: User | None) -> Identity:
    """The identity a session sends with: the authenticated user wins over its network."""
    if user is not None:
        return Identity(
            "user",
            user.username,
            user.senders,
            user.send_as,
            user.recipients,
            user.reply_to_sender,
        )
    if client is not None:
        return Identity(
            "client",
            client.name,
            client.senders,
            client.send_as,
            client.recipients,
            client.reply_to_sender,
        )
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
    """Header From and Sender must name only addresses `who` may send as, unambiguously.

    Each is read strictly (`mime.mailboxes`): one From and at most one Sender; no control
    characters; a display name that shows an address must show the mailbox's own; a value that
    parsers read differently (the CVE-2023-27043 form `a@x)<b@y>`, defects) is refused.
    """
    _check_line_ends(header_section)
    fields = header_values(header_section, {"from", "sender"})
    for name in ("from", "sender"):
        if sum(1 for key, _value in fields if key == name) > 1:
            raise PolicyError(
                replies.SENDER_NOT_ALLOWED.with_text(f"More than one {name.title()} header"),
                f"the message has more than one {name.title()} header; mail clients show "
                "one of them, so neither can be checked",
            )
    for name, value in fields:
        try:
            mailboxes = read_mailboxes(value)
        except MalformedHeaderError as error:
            reply = replies.SENDER_NOT_ALLOWED if error.spoofing else replies.MALFORMED_HEADER
            raise PolicyError(
                reply.with_text(
                    f"{'Ambiguous' if error.spoofing else 'Malformed'} {name.title()} header"
                ),
                f"header {name.title()} refused: {error.reason}: {value[:120]!r}",
            ) from None
        for mailbox in mailboxes:
            address = parse_mailbox(mailbox.key)
            if address is None or not sender_matches(address, who.senders):
                raise PolicyError(
                    replies.SENDER_NOT_ALLOWED.with_text(
                        f"{name.title()} header address not allowed for this client"
                    ),
                    f"header {name.title()} {mailbox.key} is not among {who.kind} "
                    f"{who.name!r}'s senders; add it, or give the client a send_as mailbox",
                )


ADDRESS_HEADERS = frozenset({"from", "sender", "reply-to", "to", "cc", "bcc"})


def _check_line_ends(header_section: bytes) -> None:
    """A bare CR in the header section is refused: some parsers (the standard library's among
    them) end a line there, others do not, so `X-A: b<CR>From: ceo@…` hides a From line from
    one reader and shows it to another."""
    if re.search(rb"\r(?!\n)", header_section):
        raise PolicyError(
            replies.MALFORMED_HEADER.with_text("Bare CR in the header section"),
            "the header section has a CR that is not followed by LF; the sending device or "
            "application must be fixed",
        )


def check_header_syntax(header_section: bytes) -> None:
    """No bare CR in the header section, and no control character in an address header (From,
    Sender, Reply-To, To, Cc, Bcc): parsers split such a value in different places, and Graph
    must never receive one in an address."""
    _check_line_ends(header_section)
    for name, value in header_values(header_section, set(ADDRESS_HEADERS)):
        control = control_character(value)
        if control is not None:
            title = "-".join(part.title() for part in name.split("-"))
            raise PolicyError(
                replies.MALFORMED_HEADER.with_text(f"Control character in the {title} header"),
                f"header {title} has the control character {control}; "
                "the sending device or application must be fixed",
            )


# A Content-Type field whose value starts with multipart/, however it is written: blanks before
# the colon, folding and comments before the type (the parser reads past all of them).
_COMMENT = rb"\((?:[^()\\]|\\.|\((?:[^()\\]|\\.|\((?:[^()\\]|\\.)*\))*\))*\)"  # 3 deep
_MULTIPART = re.compile(
    rb"(?im)^content-type[ \t]*:(?:[ \t]|\r?\n[ \t]|" + _COMMENT + rb")*multipart/"
)


class MultipartCounter:
    """Counts multipart containers (Content-Type fields of a multipart/ type) in a message that
    arrives in pieces, without keeping it: each piece is searched together with the tail of
    the pieces before it (from a line start, at most `TAIL` bytes), so a field cut between two
    pieces is still seen, and seen once."""

    TAIL = 64 * 1024

    def __init__(self) -> None:
        self.count = 0
        self._tail = b""
        self._line_start = True  # the tail starts at the start of a line

    def feed(self, data: bytes) -> None:
        """Count the fields that end in `data`."""
        # A tail that does not start a line gets a NUL in front, so `^` cannot match there.
        text = self._tail + data if self._line_start else b"\0" + self._tail + data
        seen = len(text) - len(data)
        self.count += sum(1 for match in _MULTIPART.finditer(text) if match.end() > seen)
        keep = text[-self.TAIL :]
        newline = keep.find(b"\n") if len(text) > self.TAIL else -1
        if len(text) <= self.TAIL:
            self._tail, self._line_start = (text if self._line_start else text[1:]), True
        elif newline >= 0:
            self._tail, self._line_start = keep[newline + 1 :], True
        else:
            self._tail, self._line_start = keep, False


def check_structure(header_section: bytes, parts: int, *, max_header: int, max_parts: int) -> None:
    """Refuse a header section over `max_header` bytes or more than `max_parts` multipart
    containers (a bound on MIME nesting that needs no full parse; `MultipartCounter`)."""
    if len(header_section) > max_header:
        raise PolicyError(
            replies.HEADER_TOO_BIG,
            f"header section is {len(header_section)} bytes (smtp.max_header_size)",
        )
    if parts > max_parts:
        raise PolicyError(
            replies.MIME_TOO_COMPLEX, f"{parts} multipart containers (smtp.max_multipart_parts)"
        )


def count_multipart(message: bytes) -> int:
    """Multipart containers in a whole message."""
    counter = MultipartCounter()
    counter.feed(message)
    return counter.count


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
