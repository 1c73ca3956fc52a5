"""Find and edit the header section of a raw RFC 5322 message without re-serialising it.

The gateway forwards the message as received; these helpers touch only the lines they must,
so everything else stays byte-identical. Pure functions over bytes.
"""

from __future__ import annotations

import re
from email import errors, policy
from email.headerregistry import Address, AddressHeader
from email.parser import BytesHeaderParser

_PARSER = BytesHeaderParser(policy=policy.default)


def _header_length(raw: bytes) -> int:
    for separator in (b"\r\n\r\n", b"\n\n"):
        index = raw.find(separator)
        if index != -1:
            return index + len(separator) // 2
    return len(raw)


def split_message(raw: bytes) -> tuple[bytes, bytes]:
    """(header section including its final line ending, rest including the blank line)."""
    cut = _header_length(raw)
    return raw[:cut], raw[cut:]


def header_section(raw: bytes) -> bytes:
    """The header section alone (without copying the body, which may be 40 MB)."""
    return raw[: _header_length(raw)]


def line_ending(raw: bytes) -> bytes:
    """The line ending the message uses (CRLF unless its first line ends in a bare LF)."""
    newline = raw.find(b"\n")
    if newline > 0 and raw[newline - 1 : newline] != b"\r":
        return b"\n"
    return b"\r\n"


def remove_headers(header_section: bytes, names: set[str]) -> bytes:
    """The header section without the named fields (and their folded continuation lines)."""
    wanted = {name.lower().encode("ascii") for name in names}
    kept: list[bytes] = []
    skipping = False
    for line in header_section.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        name = line.split(b":", 1)[0].strip().lower()
        skipping = name in wanted
        if not skipping:
            kept.append(line)
    return b"".join(kept)


def header_values(header_section: bytes, wanted: set[str]) -> list[tuple[str, str]]:
    fields: list[tuple[str, list[str]]] = []
    for line in header_section.decode("latin-1").splitlines():
        if line[:1] in (" ", "\t"):
            if fields and fields[-1][0]:
                fields[-1][1].append(line)
            continue
        name, colon, value = line.partition(":")
        key = name.strip().lower()
        fields.append((key if colon and key in wanted else "", [value]))
    return [(key, "".join(parts).strip()) for key, parts in fields if key]


def message_id(raw: bytes) -> str:
    """The Message-ID header of a raw message ("" when there is none), for logs."""
    values = header_values(header_section(raw), {"message-id"})
    return values[0][1][:200] if values else ""


_ADDR_SPEC = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
)


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
    parts = _split_outside_quotes(value)
    if parts is None:
        return None
    found: set[str] = set()
    for part in (piece.strip() for piece in parts):
        if not part:
            continue
        if part.endswith(">"):
            opening = part.rfind("<")
            display, spec = part[:opening], part[opening + 1 : -1].strip()
            unquoted = re.sub(r'"(?:[^"\\]|\\.)*"', "", display)
            if opening < 0 or any(char in unquoted for char in "<>@"):
                return None
        else:
            spec = part
        if not _ADDR_SPEC.fullmatch(spec):
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
    parsed = _PARSER.parsebytes(header_section)
    found: set[str] = set()
    suspicious = False
    for name in names:
        for value in parsed.get_all(name, []):
            if not isinstance(value, AddressHeader):
                suspicious = True
                continue
            defects = getattr(value, "defects", ())
            if any(not isinstance(defect, errors.ObsoleteHeaderDefect) for defect in defects):
                suspicious = True  # obsolete-but-clear syntax (a period in a name) is fine
            for address in value.addresses:
                if address.domain:
                    found.add(f"{address.username}@{address.domain.lower()}")
    return found, suspicious


def parsed_addresses(header_section: bytes, name: str) -> list[Address]:
    """The mailboxes of every `name` field, groups flattened; unreadable entries skipped."""
    found: list[Address] = []
    for value in _PARSER.parsebytes(header_section).get_all(name, []):
        if isinstance(value, AddressHeader):
            found.extend(address for address in value.addresses if address.domain)
    return found


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
