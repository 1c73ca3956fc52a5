"""Make the headers agree with the SMTP envelope before a MIME submission.

Graph's MIME sendMail takes recipients from the To, Cc and Bcc headers, not from an envelope.
The envelope is authoritative:
- every envelope recipient that is not in To or Cc is added as a `Bcc:` header, and any `Bcc:`
  the client left in the message is replaced;
- a To or Cc address that is not in the envelope would be mailed too, so that header is
  written again without it (groups flattened, display names kept). A header whose syntax
  cannot be trusted is written again from the addresses that could be read.
Headers that already agree with the envelope are left byte for byte as they were. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.headerregistry import Address
from email.policy import SMTP, Policy, default

from gateway.mime.headers import (
    fold_address_header,
    header_addresses,
    line_ending,
    parsed_addresses,
    remove_headers,
    split_message,
)
from gateway.mime.text import clean


@dataclass(frozen=True, slots=True)
class Prepared:
    """The message to submit and what was done to it."""

    message: bytes
    bcc: tuple[str, ...]
    headers_untrusted: bool
    left_out: tuple[str, ...] = ()  # header addresses that are not envelope recipients


def _key(address: str) -> str:
    # Exchange resolves addresses without regard to case, local part included.
    return address.lower()


def with_envelope_bcc(raw: bytes, recipients: list[str]) -> Prepared:
    """`raw` with To/Cc limited to envelope recipients and a `Bcc:` header for every envelope
    recipient missing from them."""
    header_section, rest = split_message(raw)
    envelope = {_key(recipient): recipient for recipient in reversed(recipients)}
    found, untrusted = header_addresses(header_section, ("to", "cc"))
    visible = {address.lower() for address in found}
    newline = line_ending(raw)
    rewritten = b""
    left_out: list[str] = []
    if untrusted or not visible <= envelope.keys():
        rewritten, visible, left_out = _rewrite_visible(header_section, envelope, newline)
        header_section = remove_headers(header_section, {"to", "cc"})
    bcc: list[str] = []
    seen: set[str] = set()
    for recipient in recipients:
        key = _key(recipient)
        if key in seen:
            continue
        seen.add(key)
        if key not in visible:
            bcc.append(recipient)
    had_bcc = b"bcc:" in header_section.lower()
    if not bcc and not had_bcc and not rewritten and not left_out:
        return Prepared(raw, (), untrusted)
    section = remove_headers(header_section, {"bcc"}) if had_bcc else header_section
    added = fold_address_header("Bcc", bcc, newline) if bcc else b""
    return Prepared(added + rewritten + section + rest, tuple(bcc), untrusted, tuple(left_out))


def _rewrite_visible(
    header_section: bytes, envelope: dict[str, str], newline: bytes
) -> tuple[bytes, set[str], list[str]]:
    """New To and Cc fields holding only envelope recipients; the keys they hold; the header
    addresses left out."""
    policy = SMTP.clone(linesep=newline.decode())
    fields = b""
    kept_keys: set[str] = set()
    left_out: list[str] = []
    for name in ("To", "Cc"):
        kept: list[Address] = []
        for address in parsed_addresses(header_section, name):
            key = _key(address.addr_spec)
            if key not in envelope:
                left_out.append(address.addr_spec)
            elif key not in kept_keys:
                kept_keys.add(key)
                kept.append(address)
        if kept:
            fields += _fold(name, kept, envelope, policy, newline)
    return fields, kept_keys, left_out


def _fold(
    name: str, kept: list[Address], envelope: dict[str, str], policy: Policy, newline: bytes
) -> bytes:
    """`Name: "Display" <address>, …` folded, display names RFC 2047-encoded; the addresses as
    the envelope has them (ASCII). A name the registry cannot encode leaves the addresses bare."""
    try:
        named = [
            Address(display_name=clean(a.display_name), addr_spec=envelope[_key(a.addr_spec)])
            for a in kept
        ]
        value = ", ".join(str(address) for address in named)
        folded: bytes = default.header_factory(name, value).fold(policy=policy).encode("ascii")
    except (ValueError, UnicodeError, IndexError):
        folded = fold_address_header(name, [envelope[_key(a.addr_spec)] for a in kept], newline)
    return folded
