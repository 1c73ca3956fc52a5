"""The SMTP wire details of a submission: the SASL XOAUTH2 response, SMTP transparency, which
envelopes can be sent at all, error challenges, and the TLS context (system store plus the
tenant's `ca_file`). Small and mostly pure; session.py speaks the conversation."""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

_BAD_ADDRESS = re.compile(r"[\s<>\x00-\x1f\x7f]")  # would break or inject into a command line
# A dot after a LF, or after a CR that is not the start of a CRLF (inside one piece).
_INNER_LINE_START_DOT = re.compile(rb"(\n|\r(?!\n))\.")
_CONTEXTS: dict[tuple[str, int], ssl.SSLContext] = {}


def xoauth2(username: str, token: str) -> str:
    """The base64 SASL XOAUTH2 initial response for `username` with the bearer `token`."""
    if not username or has_control(username) or " " in username:
        raise ValueError("the XOAUTH2 user name is empty or holds spaces or control characters")
    if not token or has_control(token) or " " in token:
        raise ValueError("the access token is empty or holds spaces or control characters")
    raw = f"user={username}\x01auth=Bearer {token}\x01\x01"
    return base64.b64encode(raw.encode("utf-8")).decode("ascii")


def has_control(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def envelope_problem(mail_from: str, recipients: Sequence[str]) -> tuple[str, str] | None:
    """(stage, why) when the envelope cannot be sent as given; nothing is sent then."""
    if _BAD_ADDRESS.search(mail_from):
        return "mail", f"the envelope sender {mail_from!r} cannot be sent in an SMTP command"
    if not recipients:
        return "rcpt", "the message has no envelope recipients"
    for address in recipients:
        if not address or _BAD_ADDRESS.search(address):
            return "rcpt", f"the envelope recipient {address!r} cannot be sent in an SMTP command"
    return None


class Sliceable(Protocol):
    """A message as the session sends it: a length and slices."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: slice, /) -> bytes: ...


class Spliced:
    """`head`, then `rest` from `start` on: a message with a new header section in front of
    the stored one's body, without copying the body."""

    def __init__(self, head: bytes, rest: Sliceable, start: int) -> None:
        self._head = head
        self._rest = rest
        self._start = start

    def __len__(self) -> int:
        return len(self._head) + len(self._rest) - self._start

    def __getitem__(self, index: slice, /) -> bytes:
        start, stop, _step = index.indices(len(self))
        cut = len(self._head)
        front = self._head[start:stop] if start < cut else b""
        back = b""
        if stop > cut:
            back = self._rest[self._start + max(start, cut) - cut : self._start + stop - cut]
        return front + back


class DotStuffer:
    """SMTP transparency (RFC 5321 4.5.2), a piece at a time: the message as DATA carries it,
    without the final ".".

    A dot is added at every place any server could take for the start of a line: after a LF,
    and after a bare CR too, which lenient servers read as a line end. So a stored `\r.\r\n`
    (which the gateway's reader keeps inside a message) can never end the upstream DATA early:
    the smuggling trick stops here whatever the server downstream does with bare CRs."""

    def __init__(self) -> None:
        self._line_start = True  # the next byte starts a line
        self._tail = b""  # the last two bytes sent

    def feed(self, piece: bytes) -> bytes:
        """The stuffed form of the next piece of the message."""
        if not piece:
            return b""
        stuffed = _INNER_LINE_START_DOT.sub(rb"\1..", piece)
        if self._line_start and piece[:1] == b".":
            stuffed = b"." + stuffed
        self._line_start = piece[-1:] in (b"\n", b"\r")
        self._tail = (self._tail + piece)[-2:]
        return stuffed

    def end(self) -> bytes:
        """What must follow the message before the final ".": a CRLF when it lacks one."""
        return b"" if self._tail == b"\r\n" else b"\r\n"


def dot_stuffed(message: bytes) -> bytes:
    """A whole message, stuffed (see `DotStuffer`)."""
    stuffer = DotStuffer()
    return stuffer.feed(message) + stuffer.end()


def decoded_challenge(text: str) -> str:
    """A base64 error challenge (Gmail-style JSON) as text, or the text itself."""
    try:
        decoded = base64.b64decode(text.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return text.strip()
    return decoded.strip()


def os_reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLError):
        return error.reason or type(error).__name__
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return type(error).__name__


async def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """The system store plus `ca_file` (reloaded when the file changes), host names checked."""
    return await asyncio.to_thread(load_context, ca_file)


def load_context(ca_file: Path | None) -> ssl.SSLContext:
    key = ("", 0) if ca_file is None else (str(ca_file), ca_file.stat().st_mtime_ns)
    context = _CONTEXTS.get(key)
    if context is None:
        context = ssl.create_default_context()
        if ca_file is not None:
            context.load_verify_locations(cafile=ca_file)
        _CONTEXTS[key] = context
    return context
