"""Find and edit the header section of a raw RFC 5322 message without re-serialising it.

The gateway forwards the message as received; these helpers touch only the lines they must,
so everything else stays byte-identical. Pure functions over bytes.
"""

from __future__ import annotations

import re
from email import errors, policy
from email.headerregistry import Address, AddressHeader
from email.parser import BytesHeaderParser

from gateway.mime.buffer import Buffer

_PARSER = BytesHeaderParser(policy=policy.default)


def _header_length(raw: Buffer) -> int:
    for separator in (b"\r\n\r\n", b"\n\n"):
        index = raw.find(separator)
        if index != -1:
            return index + len(separator) // 2
    return len(raw)


def split_message(raw: bytes) -> tuple[bytes, bytes]:
    """(header section including its final line ending, rest including the blank line)."""
    cut = _header_length(raw)
    return raw[:cut], raw[cut:]


def header_section(raw: Buffer) -> bytes:
    """The header section alone (without copying the body, which may be 40 MB)."""
    return raw[: _header_length(raw)]


def line_ending(raw: Buffer) -> bytes:
    """The line ending the message uses (CRLF unless its first line ends in a bare LF)."""
    newline = raw.find(b"\n")
    if newline > 0 and raw[newline - 1 : newline] != b"\r":
        return b"\n"
    return b"\r\n"


def _lines(header_section: bytes) -> list[bytes]:
    """The lines of a header section, each with its line ending. Only LF ends a line (a CRLF
    is an LF after a CR): a bare CR, VT, FF or NEL is part of the line it stands in, as SMTP
    and Exchange read it, never a break that a check could be fooled by."""
    lines = header_section.split(b"\n")
    ended = [line + b"\n" for line in lines[:-1]]
    return [*ended, lines[-1]] if lines[-1] else ended


def remove_headers(header_section: bytes, names: set[str]) -> bytes:
    """The header section without the named fields (and their folded continuation lines)."""
    wanted = {name.lower().encode("ascii") for name in names}
    kept: list[bytes] = []
    skipping = False
    for line in _lines(header_section):
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        name = line.split(b":", 1)[0].strip(b" \t").lower()
        skipping = name in wanted
        if not skipping:
            kept.append(line)
    return b"".join(kept)


def raw_field(header_section: bytes, name: str) -> bytes | None:
    """The first `name` field exactly as received (continuation lines included), or None."""
    wanted = name.lower().encode("ascii")
    found: list[bytes] = []
    for line in _lines(header_section):
        if found:
            if line[:1] not in (b" ", b"\t"):
                break
            found.append(line)
        elif line.split(b":", 1)[0].strip(b" \t").lower() == wanted and b":" in line:
            found.append(line)
    return b"".join(found) or None


def header_values(header_section: bytes, wanted: set[str]) -> list[tuple[str, str]]:
    """(lower-case name, unfolded value) of every field named in `wanted`, in order. The value
    is decoded as Latin-1, so every byte maps to one character and none is lost."""
    fields: list[tuple[str, list[str]]] = []
    for raw in _lines(header_section):
        line = raw.decode("latin-1").removesuffix("\n").removesuffix("\r")
        if line[:1] in (" ", "\t"):
            if fields and fields[-1][0]:
                fields[-1][1].append(line)
            continue
        name, colon, value = line.partition(":")
        key = name.strip(" \t").lower()  # as remove_headers: NBSP is no blank in a name
        fields.append((key if colon and key in wanted else "", [value]))
    # Only blanks are trimmed: a VT or FF at either end is part of the value, to be seen.
    return [(key, "".join(parts).strip(" \t")) for key, parts in fields if key]


def message_id(raw: Buffer) -> str:
    """The Message-ID header of a raw message ("" when there is none), for logs."""
    values = header_values(header_section(raw), {"message-id"})
    return values[0][1][:200] if values else ""


# A dot-atom local part and a domain of letter-digit-hyphen labels: the plain forms, on which
# the quick reader and the standard library's parser cannot disagree (anything else, such as
# `a..b@x` or `c@ontoso..com`, goes to the full parser).
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
ADDR_SPEC = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ \t-]*")  # atoms and spaces (quotes removed)


def _split_outside_quotes(value: str) -> list[str] | None:
    """Split on commas outside quoted strings; None if the value uses syntax we do not handle."""
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
            return None  # comments, groups, literals: leave them to the full parser
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


def quick_addresses(value: str) -> set[str] | None:
    """Addresses of a simple address-list value (`a@b`, `Name <a@b>`, `"N, M" <a@b>`), as
    comparison keys; None whenever anything is unusual, so the caller uses the full parser."""
    if not value.isascii() or any(
        (ord(char) < 32 and char != "\t") or ord(char) == 127 for char in value
    ):
        return None  # 8-bit text or control characters: read as the full parser reads them
    if "=?" in value:
        return None  # encoded words: the full parser decodes them, even inside an address
    parts = _split_outside_quotes(value)
    if parts is None:
        return None
    found: set[str] = set()
    for part in (piece.strip(" \t") for piece in parts):
        if not part:
            continue
        if part.endswith(">"):
            opening = part.rfind("<")
            display, spec = part[:opening], part[opening + 1 : -1].strip(" \t")
            unquoted = re.sub(r'"(?:[^"\\]|\\.)*"', "", display)
            if opening < 0 or not _PLAIN_NAME.fullmatch(unquoted):
                return None  # a period, a stray bracket or '@': the full parser decides
        else:
            spec = part
        if not ADDR_SPEC.fullmatch(spec):
            return None
        local, _, domain = spec.rpartition("@")
        found.add(f"{local}@{domain.lower()}")
    return found


def header_addresses(header_section: bytes, names: tuple[str, ...]) -> tuple[set[str], bool]:
    """Addresses in the named headers as comparison keys, and whether any header was malformed.

    Plain address lists are read by a small strict reader; anything else (comments, groups,
    encoded or odd syntax) goes through the standard library's RFC 5322 header parser — never
    `parseaddr` — and a header that parser reports defects for is flagged as untrusted.
    """
    found: set[str] = set()
    complex_fields = False
    for _name, value in header_values(header_section, {name.lower() for name in names}):
        quick = quick_addresses(value)
        if quick is None:
            complex_fields = True
            break
        found |= quick
    if not complex_fields:
        return found, False
    return full_header_addresses(header_section, names)


def full_header_addresses(header_section: bytes, names: tuple[str, ...]) -> tuple[set[str], bool]:
    """Addresses of the named headers by the standard parser, and whether any was untrusted
    (defects, or a value the parser fails on: it raises on some inputs, such as `To:.:`)."""
    found: set[str] = set()
    suspicious = False
    for name in names:
        for address, defects in _parse_field(header_section, name):
            suspicious = suspicious or defects
            if address is not None and address.domain:
                found.add(f"{address.username}@{address.domain.lower()}")
    return found, suspicious


def _parse_field(header_section: bytes, name: str) -> list[tuple[Address | None, bool]]:
    """(address, untrusted) for each mailbox of every `name` field; (None, True) for a field
    the parser cannot read. Obsolete-but-clear syntax (a period in a name) is trusted."""
    found: list[tuple[Address | None, bool]] = []
    try:
        values = _PARSER.parsebytes(header_section).get_all(name, [])
    except Exception:  # noqa: BLE001 - the library's parser fails on some inputs
        return [(None, True)]
    for value in values:
        try:
            if not isinstance(value, AddressHeader):
                found.append((None, True))
                continue
            defects = getattr(value, "defects", ())
            untrusted = any(not isinstance(d, errors.ObsoleteHeaderDefect) for d in defects)
            found.extend((address, untrusted) for address in value.addresses)
        except Exception:  # noqa: BLE001 - unreadable: no address from it, and untrusted
            found.append((None, True))
    return found


def parsed_addresses(header_section: bytes, name: str) -> list[Address]:
    """The mailboxes of every `name` field, groups flattened; unreadable entries skipped."""
    return [
        address
        for address, _untrusted in _parse_field(header_section, name)
        if address is not None and address.domain
    ]


def fold_address_header(name: str, addresses: list[str], newline: bytes) -> bytes:
    """`Name: a, b, c` folded below 78 characters per line, ending with `newline`."""
    lines: list[str] = []
    current = f"{name}:"
    for index, address in enumerate(addresses):
        piece = address + ("," if index < len(addresses) - 1 else "")
        if len(current) + 1 + len(piece) > 78 and current != f"{name}:":
            lines.append(current)
            current = " " + piece
        else:
            current = f"{current} {piece}"
    lines.append(current)
    return newline.join(line.encode("ascii") for line in lines) + newline
