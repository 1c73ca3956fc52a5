"""Make the headers agree with the SMTP envelope before a MIME submission.

Graph's MIME sendMail takes recipients from the To, Cc and Bcc headers, not from an envelope.
The envelope is authoritative, so every envelope recipient that is not in To or Cc is added
as a `Bcc:` header, and any `Bcc:` the client left in the message is replaced. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.mime.headers import (
    fold_address_header,
    header_addresses,
    line_ending,
    remove_headers,
    split_message,
)


@dataclass(frozen=True, slots=True)
class Prepared:
    """The message to submit and what was done to it."""

    message: bytes
    bcc: tuple[str, ...]
    headers_untrusted: bool


def with_envelope_bcc(raw: bytes, recipients: list[str]) -> Prepared:
    """`raw` with a `Bcc:` header for every envelope recipient missing from To and Cc.

    When the To or Cc header is malformed, its addresses are not trusted and every envelope
    recipient goes into Bcc, so nobody in the envelope is missed.
    """
    header_section, rest = split_message(raw)
    visible, untrusted = header_addresses(header_section, ("to", "cc"))
    bcc: list[str] = []
    seen: set[str] = set()
    for recipient in recipients:
        local, _, domain = recipient.rpartition("@")
        key = f"{local}@{domain.lower()}"
        if key in seen:
            continue
        seen.add(key)
        if untrusted or key not in visible:
            bcc.append(recipient)
    had_bcc = b"bcc:" in header_section.lower()
    if not bcc and not had_bcc:
        return Prepared(raw, (), untrusted)
    section = remove_headers(header_section, {"bcc"}) if had_bcc else header_section
    added = fold_address_header("Bcc", bcc, line_ending(raw)) if bcc else b""
    return Prepared(added + section + rest, tuple(bcc), untrusted)
