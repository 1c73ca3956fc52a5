"""A message the SMTP listener took, into the outbox: recipients sorted by the headers (To, Cc,
the rest Bcc), attachments read when they can be, the envelope kept."""

from __future__ import annotations

import datetime as dt

from gateway.emulator.mailstore import new_item_id
from gateway.emulator.messages import (
    DeliveredAttachment,
    mime_attachments,
    mime_recipients,
    mime_subject,
    parse_mime,
)
from gateway.emulator.outbox import DeliveredMessage, Envelope
from gateway.emulator.smtp_auth import SmtpPrincipal
from gateway.emulator.state import EmulatorState


async def deliver_smtp(
    state: EmulatorState,
    principal: SmtpPrincipal,
    mail_from: str,
    rcpt_to: list[str],
    content: bytes,
) -> str:
    """Put a message an SMTP session took in the outbox (mode "smtp"), envelope kept; its ID."""
    parsed = parse_mime(content)
    headers = mime_recipients(parsed)
    in_to = {a.lower() for a in headers.get("to", [])}
    in_cc = {a.lower() for a in headers.get("cc", [])}
    recipients: dict[str, list[str]] = {"to": [], "cc": [], "bcc": []}
    for address in rcpt_to:
        lowered = address.lower()
        key = "to" if lowered in in_to else "cc" if lowered in in_cc else "bcc"
        recipients[key].append(address)
    try:
        attachments: list[DeliveredAttachment] = mime_attachments(parsed)
    except Exception:  # noqa: BLE001 - a malformed part must not lose the message
        state.log.warning("emulator.smtp_attachments_unreadable")
        attachments = []
    delivered = await state.outbox.deliver(
        DeliveredMessage(
            id=new_item_id(),
            mailbox=principal.username,
            mode="smtp",
            mime=content,
            recipients=recipients,
            message_json=None,
            attachments=attachments,
            client_id=principal.client_id,
            tenant_id=principal.tenant_id,
            save_to_sent_items=True,
            received_at=dt.datetime.now(dt.UTC),
            subject=mime_subject(parsed),
            envelope=Envelope(mail_from, tuple(rcpt_to)),
        )
    )
    state.stats.smtp_messages += 1
    state.log.info(
        "emulator.delivered",
        id=delivered.id,
        seq=delivered.seq,
        mailbox=delivered.mailbox,
        mode="smtp",
        recipients=len(rcpt_to),
        size=len(content),
    )
    return delivered.id
