"""Fuzz target `sender_policy`: header From/Sender checks against what a mail client would read.

`gateway.policy.check_header_senders(header_section, identity)` for a client that may send only
as scanner@contoso.com. Refusing (`PolicyError`) is always allowed; any other exception is a
crash. When it lets a header section through, the standard library reads the same section
(`BytesHeaderParser` with `policy.default`, and `email.utils.getaddresses` on each raw From and
Sender value): every address it finds there with a domain must be scanner@contoso.com, else the
check let a spoofed sender through and the input is reported.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Iterator, Mapping
from email import policy
from email.parser import BytesHeaderParser

from gateway.errors import PolicyError
from gateway.policy import Identity, check_header_senders

MAX_LEN = 4 * 1024
ALLOWED = ("scanner", "contoso.com")
WHO = Identity("client", "printers", ("@".join(ALLOWED),))
_PARSER = BytesHeaderParser(policy=policy.default)
_HOST_NAME = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.?")
_FROM = re.compile(rb"(?im)^from:[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*")


def one_input(data: bytes) -> None:
    """Check `data`; if it passes, no other sender may be readable in it."""
    try:
        check_header_senders(data, WHO)
    except PolicyError:
        return
    others = [(how, found) for how, found in _library_addresses(data) if not _allowed(found)]
    if others:
        raise AssertionError(
            f"spoofing bypass: check_header_senders accepted {data!r}, "
            f"but the standard library reads sender addresses {others}"
        )


def _library_addresses(data: bytes) -> Iterator[tuple[str, str]]:
    """(how it was read, address) for every address with a domain the library finds."""
    try:
        headers = _PARSER.parsebytes(data)
        raw = [
            (name, value)
            for name, value in headers.raw_items()
            if name.lower() in ("from", "sender")
        ]
    except Exception:  # noqa: BLE001 - nothing to compare when the library cannot read it
        return
    for name, value in raw:
        try:
            parsed = policy.default.header_fetch_parse(name, value)  # as get_all() does
            mailboxes = [(a.username, a.domain) for a in getattr(parsed, "addresses", ())]
        except Exception:  # noqa: BLE001 - the library raises anything on some inputs; such a value is skipped
            mailboxes = []
        for local, domain in mailboxes:
            if local and domain:
                yield f"{name} (header registry)", f"{local}@{domain}"
        try:
            pairs = email.utils.getaddresses([value])
        except Exception:  # noqa: BLE001 - the library raises anything on some inputs; such a value is skipped
            pairs = []
        for _display, address in pairs:
            local, at, domain = address.rpartition("@")
            # `""@x` is no mailbox; nor is a domain that is no host name: the lenient parser
            # cuts folded quoted names into such pieces (`scanner@floor3?Q?Canon…`), which no
            # mail system could send as.
            if at and _unquoted(local) and _HOST_NAME.fullmatch(domain.strip()):
                yield f"{name} (getaddresses)", address


def _unquoted(local: str) -> str:
    """A local part as getaddresses gives it (quotes kept) in the form the registry gives."""
    if len(local) >= 2 and local.startswith('"') and local.endswith('"'):
        return re.sub(r"\\(.)", r"\1", local[1:-1])
    return local


def _allowed(address: str) -> bool:
    local, _, domain = address.rpartition("@")
    return (_unquoted(local).lower(), domain.lower()) == ALLOWED


# --- seeds ----------------------------------------------------------------------------------

_HAND_WRITTEN = {
    "allowed-plain": b"From: scanner@contoso.com\r\nTo: a@contoso.com\r\n\r\n",
    "allowed-named": b'From: "Scanner, 3rd floor" <scanner@CONTOSO.com>\r\n\r\n',
    "allowed-sender-too": (
        b"From: Scanner <scanner@contoso.com>\r\nSender: scanner@contoso.com\r\n\r\n"
    ),
    "allowed-comment": b"From: scanner@contoso.com (Ricoh MP C3004)\r\n\r\n",
    "allowed-folded": b"From:\r\n Scanner\r\n <scanner@contoso.com>\r\n\r\n",
    "allowed-encoded-name": b"From: =?utf-8?q?Sc=C3=A4nner?= <scanner@contoso.com>\r\n\r\n",
    "refused-other": b"From: ceo@contoso.com\r\n\r\n",
    "refused-cve-2023-27043": b"From: scanner@contoso.com)<ceo@contoso.com>\r\n\r\n",
    "refused-group": b"From: g: scanner@contoso.com, ceo@contoso.com;\r\n\r\n",
    "refused-name-address": b'From: "ceo@contoso.com" <scanner@contoso.com>\r\n\r\n',
    "refused-two-froms": b"From: scanner@contoso.com\r\nFrom: ceo@contoso.com\r\n\r\n",
    "refused-bare-lf": b"From: scanner@contoso.com\nSender: ceo@contoso.com\n\n",
    "refused-quoted-local": b'From: "scanner"@contoso.com, <ceo@contoso.com>\r\n\r\n',
}


def seeds(messages: Mapping[str, bytes]) -> dict[str, bytes]:
    """Header sections of the test messages with From set to the allowed address (and as
    sent), and the hand-written cases."""
    found = {}
    for name, data in messages.items():
        end = data.find(b"\r\n\r\n")
        end = data.find(b"\n\n") if end < 0 else end
        section = data[: end + 4] if end >= 0 else data[:MAX_LEN]
        if len(section) <= MAX_LEN:
            found[f"eml-{name}"] = section
            allowed = _FROM.sub(b"From: Scanner <scanner@contoso.com>", section)
            found[f"eml-{name}-allowed"] = allowed
    return {**found, **_HAND_WRITTEN}
