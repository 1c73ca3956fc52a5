"""What the console shows of a message: its main headers and its attachments' names and
sizes, read from the raw bytes. Never a body: text parts are counted, not shown.
"""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

_HEADERS = ("From", "To", "Cc", "Subject", "Date", "Message-ID")
_MAX_PARTS = 500


def summarize(raw: bytes) -> dict[str, Any]:
    """Headers (decoded, one line each) and attachments ({name, type, size}) of a message."""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    headers: dict[str, str] = {}
    for name in _HEADERS:
        try:
            value = message.get(name)
        except (ValueError, IndexError, TypeError):  # a header the parser cannot decode
            value = None
        if value is not None:
            headers[name] = " ".join(str(value).split())
    return {"headers": headers, "attachments": _attachments(message), "size": len(raw)}


def _attachments(message: EmailMessage) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for count, part in enumerate(message.walk()):
        if count >= _MAX_PARTS:
            break
        if part.is_multipart():
            continue
        try:
            name = part.get_filename()
        except (ValueError, IndexError, TypeError):
            name = None
        disposition = part.get_content_disposition()
        if name is None and disposition != "attachment":
            continue
        payload = part.get_payload(decode=True)
        size = len(payload) if isinstance(payload, bytes) else 0
        found.append({"name": name or "(no name)", "type": part.get_content_type(), "size": size})
    return found
