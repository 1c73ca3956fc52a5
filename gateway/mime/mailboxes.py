"""Read the mailboxes of an address header strictly, for decisions about who sends a message.

The policy decides whether a client may use a header From or Sender by what this module reads,
so it must read what a mail client will show, or refuse. A value is read by a small strict
reader when it has the plain shapes devices send (`a@b`, `Name <a@b>`, `"N, M" <a@b>`, and
`a@b <a@b>` with the address repeated as the name); anything else (comments, groups, odd
syntax) goes through the standard library's RFC 5322 parser — never `parseaddr`, which this
Python misreads (CVE-2023-27043) — and a parse with defects is refused as ambiguous.

A display name is what a reader sees first. One that carries an address — literally, quoted,
in an encoded word, in full-width or other look-alike characters — must carry the mailbox's own
address; a different one is a spoof. Control characters anywhere in an address header are
refused: they split lines differently in different parsers. Pure.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from email import errors, policy
from email.headerregistry import AddressHeader
from email.parser import BytesHeaderParser

from gateway.errors import GatewayError
from gateway.mime.headers import ADDR_SPEC
from gateway.mime.text import clean, decode_words, guess_bytes

_PARSER = BytesHeaderParser(policy=policy.default)
# C0 controls but TAB, DEL, C1 controls, and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
# Something that reads as an Internet address to a person: text, an at sign, and a domain with
# a top-level label (`ceo@contoso.com`). A device name such as `scanner@floor3` (a Brother MFP's
# default display name) is not one.
_LOOKS_LIKE_ADDRESS = re.compile(
    r"[^\s\"'<>()\[\],;:@]+@(?:[^\s\"'<>()\[\],;:@.]+\.)+[^\W\d_][^\s\"'<>()\[\],;:@.]+"
)
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)


class MalformedHeaderError(GatewayError):
    """An address header that cannot be trusted. `spoofing`: it reads as two different senders
    (a different address in the name, a parser-confusing shape), not merely broken syntax."""

    def __init__(self, reason: str, *, spoofing: bool) -> None:
        self.reason = reason
        self.spoofing = spoofing
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class Mailbox:
    """One mailbox of a header: its decoded display name and its address."""

    name: str
    address: str

    @property
    def key(self) -> str:
        """The address with its domain in lower case (how senders are compared)."""
        local, _, domain = self.address.rpartition("@")
        return f"{local}@{domain.lower()}"


def header_text(value: str) -> str:
    """A header value from `headers.header_values` (Latin-1, a character per byte) as the text
    a mail client shows: UTF-8 when it is valid UTF-8, else windows-1252."""
    return guess_bytes(value.encode("latin-1", "replace"))


def control_character(value: str) -> str | None:
    """The first control character in an unfolded header value, as `U+000B`; None if none."""
    found = _CONTROL.search(header_text(value))
    return f"U+{ord(found.group()):04X}" if found else None


def read_mailboxes(value: str) -> list[Mailbox]:
    """The mailboxes of an address-list value from `headers.header_values`; raises
    `MalformedHeaderError` when it cannot be read unambiguously."""
    control = control_character(value)
    if control is not None:
        raise MalformedHeaderError(f"control character {control} in the value", spoofing=False)
    found = _quick(value)
    if found is None:
        found = _parsed(value)
    for mailbox in found:
        _check_name(mailbox)
    return found


def addresses_in_name(name: str) -> set[str]:
    """The addresses a person would read in a display name (lower case): after decoding encoded
    words, folding look-alike characters (NFKC: a full-width at sign is an at sign) and dropping
    invisible format characters."""
    text = unicodedata.normalize("NFKC", decode_words(name))
    text = "".join(char for char in text if unicodedata.category(char) != "Cf")
    return {match.group().strip(".").lower() for match in _LOOKS_LIKE_ADDRESS.finditer(text)}


_ANGLE_ADDRESS = re.compile(r"<[^<>]*@")  # `<x@…` inside a display name


def _check_name(mailbox: Mailbox) -> None:
    others = addresses_in_name(mailbox.name) - {mailbox.address.lower()}
    if not others and _ANGLE_ADDRESS.search(unicodedata.normalize("NFKC", mailbox.name)):
        # A name that holds `<…@…` reads as a second mailbox to a lenient parser (Python's
        # getaddresses took `"Scanner <scanner@cop%e: …" <scanner@contoso.com>` so).
        raise MalformedHeaderError(
            "the display name holds an address in angle brackets", spoofing=True
        )
    if others:
        raise MalformedHeaderError(
            f"the display name shows another address ({sorted(others)[0]}) than the "
            f"mailbox's own ({mailbox.address})",
            spoofing=True,
        )


def _split_outside_quotes(value: str) -> list[str] | None:
    """Split on commas outside quoted strings; None if the value uses syntax left to the
    standard parser (comments, groups, literals, route addresses, an open quote)."""
    parts, current, quoted = [], [], False
    index = 0
    while index < len(value):
        char = value[index]
        if char == '"':
            quoted = not quoted
        elif char == "\\" and quoted:
            current.append(value[index : index + 2])
            index += 2
            continue
        elif not quoted and char in "();:\\[]":
            return None
        elif not quoted and char == ",":
            parts.append("".join(current))
            current = []
            index += 1
            continue
        current.append(char)
        index += 1
    if quoted:
        return None
    parts.append("".join(current))
    return parts


def _unquote(display: str) -> str:
    """A display name's text: quoted strings without their quotes and escapes."""
    return _QUOTED.sub(lambda match: re.sub(r"\\(.)", r"\1", match.group(1)), display).strip()


def _quick(value: str) -> list[Mailbox] | None:
    """The plain shapes, read exactly; None for anything else."""
    parts = _split_outside_quotes(value)
    if parts is None:
        return None
    found: list[Mailbox] = []
    for part in (piece.strip(" \t") for piece in parts):  # not str.strip(): NBSP is no space
        if not part:
            continue
        display = ""
        spec = part
        if part.endswith(">"):
            opening = part.rfind("<")
            if opening < 0:
                return None
            display, spec = part[:opening], part[opening + 1 : -1].strip(" \t")
            if any(char in _QUOTED.sub("", display) for char in "<>"):
                return None
        if not ADDR_SPEC.fullmatch(spec):
            return None
        if "@" in _QUOTED.sub("", display):
            _check_bare_name(display, spec)
        found.append(Mailbox(header_text(_unquote(display)), spec))
    return found


_ANY_ADDRESS = re.compile(r"[^\s<>()\[\],;:@]+@[^\s<>()\[\],;:@]+")


def _check_bare_name(display: str, spec: str) -> None:
    """A display name with an at sign outside quotes (`scanner@x <scanner@x>`, or the spoof
    `"ceo"@contoso <scanner@…>`) is itself read as an address by some parsers: whatever it
    spells, it must be the mailbox's own address."""
    flat = display.replace('"', "")
    others = {m.group().strip(".").lower() for m in _ANY_ADDRESS.finditer(flat)} - {spec.lower()}
    if others or not _ANY_ADDRESS.search(flat):
        raise MalformedHeaderError(
            f"the display name {display.strip()!r} reads as another address than the "
            f"mailbox's own ({spec})",
            spoofing=True,
        )


def _comments(value: str) -> list[str]:
    """The text of every comment outside quoted strings (nested ones too, innermost first)."""
    text = _QUOTED.sub("", value)
    found: list[str] = []
    while True:
        innermost = list(re.finditer(r"\(((?:[^()\\]|\\.)*)\)", text))
        if not innermost:
            return found
        found.extend(match.group(1) for match in innermost)
        text = re.sub(r"\((?:[^()\\]|\\.)*\)", " ", text)


def _parsed(value: str) -> list[Mailbox]:
    """The standard RFC 5322 parser's reading; refused when it finds defects or fails."""
    raw = b"From: " + value.encode("latin-1", "replace") + b"\r\n\r\n"
    try:
        header = _PARSER.parsebytes(raw)["From"]
        defects = [
            defect
            for defect in getattr(header, "defects", ())
            if not isinstance(defect, errors.ObsoleteHeaderDefect)
        ]
        addresses = header.addresses if isinstance(header, AddressHeader) else None
    except Exception:  # noqa: BLE001 - the library's parser fails on some inputs: unreadable
        raise MalformedHeaderError("the address list cannot be read", spoofing=False) from None
    if addresses is None:
        raise MalformedHeaderError("not an address list", spoofing=False)
    if defects:
        raise MalformedHeaderError(
            f"the address list reads differently in different parsers ({defects[0]})",
            spoofing=True,
        )
    found: list[Mailbox] = []
    own = {address.addr_spec.lower() for address in addresses}
    for comment in _comments(value):
        others = addresses_in_name(header_text(comment)) - own
        if others:  # `a@b (ceo@x)`: some clients show the comment as the name
            raise MalformedHeaderError(
                f"a comment shows another address ({sorted(others)[0]})", spoofing=True
            )
    for address in addresses:
        if not address.domain:
            if address.username:
                raise MalformedHeaderError(f"{address.username!r} has no domain", spoofing=False)
            continue
        found.append(Mailbox(clean(str(address.display_name)), clean(address.addr_spec)))
    return found
