"""Find and edit the header section of a raw RFC 5322 message without re-serialising it.

The gateway forwards the message as received; these helpers touch only the lines they must,
so everything else stays byte-identical. Pure functions over bytes.
"""

from __future__ import annotations

from email import policy
from email.headerregistry import AddressHeader
from email.parser import BytesHeaderParser

_PARSER = BytesHeaderParser(policy=policy.default)


def split_message(raw: bytes) -> tuple[bytes, bytes]:
    """(header section including its final line ending, rest including the blank line)."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        index = raw.find(separator)
        if index != -1:
            cut = index + len(separator) // 2
            return raw[:cut], raw[cut:]
    return raw, b""


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


def header_addresses(header_section: bytes, names: tuple[str, ...]) -> tuple[set[str], bool]:
    """Addresses in the named headers as comparison keys, and whether any header was malformed.

    Uses the standard library's RFC 5322 header parser (not `parseaddr`); a header the parser
    reports defects for is flagged so callers do not trust it.
    """
    parsed = _PARSER.parsebytes(header_section)
    found: set[str] = set()
    suspicious = False
    for name in names:
        for value in parsed.get_all(name, []):
            if not isinstance(value, AddressHeader):
                suspicious = True
                continue
            if getattr(value, "defects", ()):
                suspicious = True
            for address in value.addresses:
                if address.domain:
                    found.add(f"{address.username}@{address.domain.lower()}")
    return found, suspicious


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
