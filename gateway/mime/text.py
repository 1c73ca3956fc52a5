"""Bytes and header values to Unicode, whatever the sender declared (or failed to).

Declared charsets are looked up under every name Python knows; undeclared or mis-declared 8-bit
text is read as UTF-8 when it is valid UTF-8, else as windows-1252 (what Western devices send);
nothing here raises on bad input. Pure.
"""

from __future__ import annotations

import binascii
import codecs
import re

_ASCII_LABELS = frozenset({"us-ascii", "ascii", "ansi_x3.4-1968", "646", "us"})


def _lookup(charset: str) -> str | None:
    name = charset.strip().strip('"').lower()
    if not name:
        return None
    if name.startswith("x-") and not _known(name):
        name = name[2:]  # x-sjis, x-euc-jp and friends
    aliases = {
        "windows-874": "cp874",
        "ks_c_5601-1987": "euc_kr",
        "gb2312": "gb18030",
        "gbk": "gb18030",
        "x-mac-roman": "mac_roman",
        "unicode-1-1-utf-7": "utf-7",
        "iso-8859-8-i": "iso-8859-8",
        "x-user-defined": "latin-1",
    }
    name = aliases.get(name, name)
    return name if _known(name) else None


def _known(name: str) -> bool:
    """A codec Python has that turns bytes into text (not base64, rot13 and the like)."""
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):  # ValueError: a NUL in the name (`charset="a\0b"`)
        return False
    return getattr(info, "_is_text_encoding", True) and info.name not in ("idna", "punycode")


def decode_bytes(raw: bytes, charset: str | None) -> str:
    """`raw` as text: in its declared charset when Python knows it and the bytes fit, else
    UTF-8, else windows-1252. Never raises."""
    name = _lookup(charset) if charset else None
    if name is not None and name.replace("_", "-") not in _ASCII_LABELS:
        try:
            return raw.decode(name)
        except (UnicodeError, ValueError):
            if name not in ("utf-8", "utf8"):
                try:
                    return raw.decode(name, "replace")
                except (UnicodeError, ValueError):
                    pass
    return guess_bytes(raw)


def guess_bytes(raw: bytes) -> str:
    """Undeclared bytes: UTF-8 when valid, else windows-1252 (with its five holes kept)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")


def clean(text: str) -> str:
    """A header value from the email parser with raw 8-bit bytes (kept as surrogate escapes)
    read as UTF-8, else windows-1252."""
    if not any("\udc80" <= char <= "\udcff" for char in text):
        return text
    return guess_bytes(text.encode("utf-8", "surrogateescape"))


_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([QqBb])\?([^?\s]*)\?=")


def decode_words(value: str) -> str:
    """Decode the RFC 2047 encoded words in a value, also where the standard does not allow
    them but devices put them (quoted filenames, words glued to text). Blanks between two
    encoded words go, as the RFC says; adjacent words in one charset are decoded together (a
    character split across two words survives); other text stays as it is. Never raises."""
    if "=?" not in value:
        return value
    out: list[str] = []
    run: list[bytes] = []
    run_charset = ""
    position = 0
    for match in _ENCODED_WORD.finditer(value):
        between = value[position : match.start()]
        raw = _word_bytes(match)
        charset = match.group(1).split("*", 1)[0].lower()
        if raw is None:
            continue  # left as text: it is copied with the next `between`
        adjacent = run and not between.strip(" \t\r\n")
        if adjacent and charset == run_charset:
            run.append(raw)
        else:
            if run:
                out.append(decode_bytes(b"".join(run), run_charset))
            if not adjacent:
                out.append(between)
            run, run_charset = [raw], charset
        position = match.end()
    if run:
        out.append(decode_bytes(b"".join(run), run_charset))
    out.append(value[position:])
    return "".join(out)


def _word_bytes(match: re.Match[str]) -> bytes | None:
    encoding, text = match.group(2), match.group(3)
    try:
        if encoding in "Bb":
            data = text.encode("ascii").translate(None, b" \t")
            return binascii.a2b_base64(data + b"=" * (-len(data) % 4))
        return binascii.a2b_qp(text.encode("ascii"), header=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
