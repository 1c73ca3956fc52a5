"""Rewrite the header From to the mailbox the gateway sends as, keeping the display name.

Devices that cannot set a proper From (`scanner@printer.local`) are sent as a configured
mailbox. Graph refuses a From that differs from the sending mailbox unless the app has Send As
rights (`ErrorSendAsDenied`), so the From becomes that mailbox; the original address moves to
Reply-To (when the message has none), so replies still reach the sender. Pure.
"""

from __future__ import annotations

from email import message_from_string
from email.headerregistry import Address
from email.policy import SMTP, default

from gateway.mime.headers import (
    header_values,
    line_ending,
    raw_field,
    remove_headers,
    split_message,
)
from gateway.mime.text import clean


def _display_name(value: str) -> str:
    """The display name of the first mailbox of a From value ("" when there is none or the
    value cannot be read), as text that encodes (no surrogates from raw 8-bit bytes)."""
    try:
        parsed = message_from_string(f"From: {value}\n\n", policy=default)
        addresses = getattr(parsed["From"], "addresses", ())
        return clean(str(addresses[0].display_name)) if addresses else ""
    except Exception:  # noqa: BLE001 - the library's parser fails on some values (`From::;f`)
        return ""


def rewrite_from(raw: bytes, mailbox: str, *, reply_to_sender: bool = True) -> bytes:
    """`raw` with From set to `mailbox` (same display name) and, unless told not to or the
    message has one, Reply-To set to the old From (its bytes as received)."""
    header_section, rest = split_message(raw)
    newline = line_ending(raw)
    found = dict(header_values(header_section, {"from", "reply-to"}))
    original = found.get("from", "")
    local, _, domain = mailbox.rpartition("@")
    name = _display_name(original) if original else ""
    policy = SMTP.clone(linesep=newline.decode())
    try:
        new_from = Address(display_name=name, username=local, domain=domain)
        # Folding through the header registry RFC 2047-encodes a non-ASCII display name.
        added = default.header_factory("From", str(new_from)).fold(policy=policy).encode("ascii")
    except (ValueError, UnicodeError):  # a name the registry cannot encode: the address alone
        added = f"From: {mailbox}".encode("ascii") + newline
    field = raw_field(header_section, "from")
    if reply_to_sender and field is not None and "reply-to" not in found:
        added += b"Reply-To:" + field.split(b":", 1)[1]
    result: bytes = added + remove_headers(header_section, {"from"}) + rest
    return result
