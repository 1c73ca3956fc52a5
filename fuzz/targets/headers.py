"""Fuzz target `headers`: a header section through the gateway's header readers and editors.

`gateway.mime.headers` (header_values, quick_addresses, header_addresses, full_header_addresses,
parsed_addresses, remove_headers), `gateway.addresses.parse_mailbox` on every value, and
`gateway.mime.text`: decode_words on every value, and decode_bytes of the input in a charset
named by its first line (what a fuzzed `charset=` parameter reaches). None may raise. Checked
besides: the strict quick reader, when it answers, reads the same addresses as the full
parser it stands in for; a field `remove_headers` removed is not found by `header_values`;
`parse_mailbox` reads back what it returns.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.addresses import parse_mailbox
from gateway.mime.headers import (
    full_header_addresses,
    header_addresses,
    header_values,
    parsed_addresses,
    quick_addresses,
    remove_headers,
)
from gateway.mime.text import clean, decode_bytes, decode_words

MAX_LEN = 8 * 1024
NAMES = ("from", "sender", "to", "cc", "bcc", "reply-to")


def one_input(data: bytes) -> None:
    """Read `data` as a header section every way the gateway does."""
    for name, value in header_values(data, set(NAMES)):
        if name not in NAMES:
            raise AssertionError(f"header_values returned unwanted {name!r}")
        _check_quick_reader(value)
        _check_mailbox(value)
        decode_words(value)
    header_addresses(data, ("to", "cc"))
    full_header_addresses(data, NAMES)
    for name in ("From", "To"):
        parsed_addresses(data, name)
    for removed in ({"bcc"}, {"to", "cc"}, {"from"}):
        left = header_values(remove_headers(data, removed), removed)
        if left:
            raise AssertionError(f"remove_headers({sorted(removed)}) kept {left}")
    charset, _, raw = data.partition(b"\n")
    decode_bytes(raw, charset.decode("latin-1").strip())
    decode_bytes(raw, None)
    decode_words(clean(data.decode("ascii", "surrogateescape")))


def _check_quick_reader(value: str) -> None:
    quick = quick_addresses(value)
    if quick is None:
        return
    full, _untrusted = full_header_addresses(f"To: {value}\r\n\r\n".encode("latin-1"), ("to",))
    if quick != full:
        raise AssertionError(f"quick_addresses read {quick} but the full parser {full}: {value!r}")


def _check_mailbox(value: str) -> None:
    address = parse_mailbox(value)
    if address is not None and parse_mailbox(str(address)) != address:
        raise AssertionError(f"parse_mailbox({value!r}) = {address} does not read back")


# --- seeds ----------------------------------------------------------------------------------

_HAND_WRITTEN = {
    "plain": b"From: scanner@contoso.com\r\nTo: alice@contoso.com, Bob <bob@fabrikam.com>\r\n\r\n",
    "folded-quoted": (
        b'utf-8\r\nTo: "Doe, Jane" <jane@contoso.com>,\r\n\tjohn@contoso.com\r\n'
        b"Cc: =?iso-8859-1?q?J=F6rg?= <j@contoso.com>\r\nBcc: secret@contoso.com\r\n\r\n"
    ),
    "group-comment-literal": (
        b'To: undisclosed-recipients:;\r\nCc: team: a@b.example (x), "q\\"x"@[10.0.0.1];\r\n'
        b"From: (comment) <@route:a@b.example>\r\n\r\n"
    ),
    "encoded-words": (
        b"shift_jis\nSubject: =?utf-8?b?w6k=?= =?utf-8?B?w6k?= =?x-sjis?Q?=82=A0?=\n"
        b"From: =?utf-8?q?evil=40x.example?= <scanner@contoso.com>\n\n"
    ),
    "cve-2023-27043": b"From: alice@example.org)<bob@example.org>\r\n\r\n",
    "eight-bit-and-controls": b"latin-1\nTo: J\xf6rg <j@contoso.com>\x0bCc: x@y.example\n\n",
    "bare-lf-continuation": b"To: a@contoso.com\n Bcc: b@contoso.com\nbcc :c@contoso.com\n\n",
}


def seeds(messages: Mapping[str, bytes]) -> dict[str, bytes]:
    """The header section of every test message, and the hand-written cases."""
    found = {}
    for name, data in messages.items():
        end = data.find(b"\r\n\r\n")
        end = data.find(b"\n\n") if end < 0 else end
        found[f"eml-{name}"] = data[: end + 4] if end >= 0 else data[:MAX_LEN]
    return {**found, **_HAND_WRITTEN}
