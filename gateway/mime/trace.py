"""The Received header the gateway adds as a relay (RFC 5321 4.4), from the session facts kept
with the message:

    Received: from HELO ([IP])
        by smtp.hostname with ESMTPSA id QUEUEID
        for <rcpt>; Sun, 06 Dec 2026 20:45:41 +0000

(continuation lines start with a tab).
`for` names the recipient only when there is one (naming several would tell each the others'
Bcc). The `with` keyword follows RFC 3848 (SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA). Prepending a
header changes neither an S/MIME signature (it covers the body part) nor DKIM (it signs named
fields, taken from the bottom up). Pure.
"""

from __future__ import annotations

import datetime
import email.utils
import ipaddress
import re
from collections.abc import Sequence

# What a header may carry of a client's HELO name: printable ASCII, no comment delimiters.
_UNSAFE = re.compile(r"[^\x21-\x27\x2a-\x5b\x5d-\x7e]")
_MAX_HELO = 255


def received_header(
    *,
    helo: str,
    ip: str,
    hostname: str,
    protocol: str,
    queue_id: str,
    recipients: Sequence[str],
    when: float,
) -> bytes:
    """The folded Received field, CRLF-terminated."""
    name = _UNSAFE.sub("_", helo)[:_MAX_HELO] or "unknown"
    by = _UNSAFE.sub("_", hostname)[:_MAX_HELO] or "localhost"
    recipient = ""
    if len(recipients) == 1 and _safe_address(recipients[0]):
        recipient = f"\r\n\tfor <{recipients[0]}>"
    date = email.utils.format_datetime(datetime.datetime.fromtimestamp(when, datetime.UTC))
    date = date.replace("-0000", "+0000")  # UTC is known here, not unknown (RFC 5322 3.3)
    field = (
        f"Received: from {name} ({_literal(ip)})\r\n"
        f"\tby {by} with {protocol} id {queue_id}{recipient}; {date}\r\n"
    )
    return field.encode("ascii", "replace")


def _literal(ip: str) -> str:
    """An address literal: [192.0.2.1] or [IPv6:2001:db8::1] (RFC 5321 4.1.3)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return "unknown"
    return f"[{address}]" if address.version == 4 else f"[IPv6:{address}]"


def _safe_address(address: str) -> bool:
    return address.isascii() and not any(c in address for c in "<>\r\n\t ")
