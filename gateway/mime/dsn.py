"""Delivery status notifications (RFC 3464): tell a sender that a message was not delivered.

`build_dsn` returns a complete multipart/report message: a readable explanation, the
machine-readable `message/delivery-status` part, and the original message's headers (not its
body, which may be large or confidential). Pure: time and names are passed in.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import SMTP

from gateway.mime.buffer import Buffer
from gateway.mime.headers import header_section
from gateway.mime.text import guess_bytes


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a message could not be delivered."""

    recipients: tuple[str, ...]
    status: str  # RFC 3463 enhanced status, e.g. 5.0.0 or 4.4.7 (expired)
    diagnostic: str  # Graph's answer, e.g. "404 MailboxNotEnabledForRESTAPI"
    explanation: str  # for humans


def build_dsn(
    *,
    original: Buffer,
    original_sender: str,
    queue_id: str,
    failure: Failure,
    postmaster: str,
    reporting_host: str,
    arrival: float,
    now: float,
) -> bytes:
    """The notification to send to `original_sender` from `postmaster`."""
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = email.utils.formataddr(("Mail Delivery System", postmaster))
    report["To"] = original_sender
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Date"] = email.utils.formatdate(now, localtime=False)
    report["Message-ID"] = email.utils.make_msgid("dsn", domain=reporting_host or None)
    report["Auto-Submitted"] = "auto-replied"
    listed = "\n".join(f"  <{recipient}>" for recipient in failure.recipients)
    text = (
        f"This is the mail gateway at {reporting_host}.\n\n"
        f"Your message (queue ID {queue_id}) could not be delivered to:\n\n{listed}\n\n"
        f"Reason: {failure.explanation}\n"
        f"Microsoft Graph answered: {failure.diagnostic}\n\n"
        "The headers of your message are attached.\n"
    )
    report.attach(MIMEText(text, "plain", "us-ascii" if text.isascii() else "utf-8"))
    report.attach(_status_part(queue_id, failure, reporting_host, arrival))
    # The original's headers may hold raw 8-bit bytes (a device's UTF-8 or windows-1252 name):
    # read as text a client would show, and sent in UTF-8 with a transfer encoding.
    lines = header_section(original).split(b"\n")  # devices mix charsets field by field
    shown = "\n".join(guess_bytes(line) for line in lines)
    report.attach(MIMEText(shown, "rfc822-headers", "utf-8"))
    return report.as_bytes(policy=SMTP)


def _status_part(queue_id: str, failure: Failure, host: str, arrival: float) -> Message:
    # message/delivery-status is a list of header blocks: one per message, one per recipient.
    part = MIMEBase("message", "delivery-status")
    per_message = Message()
    per_message["Reporting-MTA"] = f"dns; {host}"
    per_message["X-Queue-ID"] = queue_id
    per_message["Arrival-Date"] = email.utils.formatdate(arrival, localtime=False)
    blocks: list[Message | str] = [per_message]
    for recipient in failure.recipients:
        block = Message()
        block["Final-Recipient"] = f"rfc822; {recipient}"
        block["Action"] = "failed"
        block["Status"] = failure.status
        block["Diagnostic-Code"] = f"X-Graph; {_ascii(failure.diagnostic)}"
        blocks.append(block)
    part.set_payload(blocks)
    return part


def _ascii(text: str) -> str:
    """A one-line, printable ASCII field value (status fields are not encoded-word text)."""
    return "".join(c if " " <= c <= "~" else "?" for c in text)[:900]


def is_notification(message: Buffer) -> bool:
    """Whether `message` is itself a delivery report or an automatic reply (never bounced)."""
    header = header_section(message).lower()
    return b"report-type=delivery-status" in header or b"\nauto-submitted: auto-" in header
