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

from gateway.mime.headers import header_values, line_ending, remove_headers, split_message


def _display_name(value: str) -> str:
    parsed = message_from_string(f"From: {value}\n\n", policy=default)
    header = parsed["From"]
    addresses = getattr(header, "addresses", ())
    return str(addresses[0].display_name) if addresses else ""


def rewrite_from(raw: bytes, mailbox: str, *, reply_to_sender: bool = True) -> bytes:
    """`raw` with From set to `mailbox` (same display name) and, unless told not to or the
    message has one, Reply-To set to the old From."""
    header_section, rest = split_message(raw)
    newline = line_ending(raw)
    found = dict(header_values(header_section, {"from", "reply-to"}))
    original = found.get("from", "")
    local, _, domain = mailbox.rpartition("@")
    name = _display_name(original) if original else ""
    new_from = Address(display_name=name, username=local, domain=domain)
    policy = SMTP.clone(linesep=newline.decode())
    # Folding through the header registry RFC 2047-encodes a non-ASCII display name.
    added = default.header_factory("From", str(new_from)).fold(policy=policy).encode("ascii")
    if reply_to_sender and original and "reply-to" not in found:
        added += policy.fold("Reply-To", original).encode("utf-8", "surrogateescape")
    result: bytes = added + remove_headers(header_section, {"from"}) + rest
    return result
