"""Parse and compare envelope addresses (RFC 5321 mailboxes) without `email.utils`.

`email.utils.parseaddr` in this Python is fooled by `alice@example.org)<bob@example.org>`
(CVE-2023-27043), so envelope addresses are checked here with a strict, small grammar. Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A dot-atom or quoted-string local part, an LDH domain (or an address literal).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_QUOTED = r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"'
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*"
_LITERAL = r"\[[\x21-\x5a\x5e-\x7e]+\]"
_MAILBOX = re.compile(rf"^({_DOT_ATOM}|{_QUOTED})@({_DOMAIN}|{_LITERAL})$")
MAX_ADDRESS_LENGTH = 254


@dataclass(frozen=True, slots=True)
class Address:
    """A mailbox: the local part kept as given, the domain lowercased."""

    local: str
    domain: str

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}"

    @property
    def key(self) -> str:
        """Comparison key: local part as given, domain case-insensitive."""
        return str(self)


def parse_mailbox(text: str) -> Address | None:
    """The address in `text` (with or without angle brackets), or None if it is not one.

    Rejects CR, LF, NUL, spaces outside quotes, source routes and anything after the domain.
    """
    candidate = text.strip()
    if candidate.startswith("<") and candidate.endswith(">"):
        candidate = candidate[1:-1]
    if not candidate or len(candidate) > MAX_ADDRESS_LENGTH:
        return None
    if any(char in candidate for char in "\r\n\x00"):
        return None
    match = _MAILBOX.match(candidate)
    if match is None:
        return None
    return Address(local=match.group(1), domain=match.group(2).lower())


def sender_matches(address: Address, patterns: tuple[str, ...]) -> bool:
    """Whether `address` is allowed by any pattern: `*`, `*@domain`, or an exact address.

    Domains compare case-insensitively; exact addresses compare case-insensitively too, as
    Exchange does for mailboxes.
    """
    full = str(address).lower()
    for pattern in patterns:
        if pattern in ("*", full):
            return True
        if pattern.startswith("*@") and pattern[2:] == address.domain:
            return True
    return False
