"""`POST /users/{id}/sendMail` (and `/me/sendMail`): one request, one message, 202 or an error.

`Content-Type: application/json` carries `{"message": {…}, "saveToSentItems": bool}`, checked
against our schema and Graph's rules, and rendered as an .eml for the outbox.
`Content-Type: text/plain` carries the base64 of a whole MIME message (line breaks allowed);
its recipients come from its To, Cc and Bcc headers, and the outbox keeps its exact bytes.
Either way: no recipients → 400 `ErrorInvalidRecipients`; a mailbox fault for sends applies.
"""

from __future__ import annotations

from aiohttp import web

from gateway.emulator.context import GraphContext, GraphFailure, decode_mime_body
from gateway.emulator.messages import (
    json_attachments,
    mime_attachments,
    mime_recipients,
    mime_subject,
    parse_mime,
    render_json_message,
)
from gateway.emulator.payloads import (
    check_recipients,
    json_recipients,
    parse_json,
    parse_send_mail,
)


async def send_mail(ctx: GraphContext) -> web.Response:
    content_type = ctx.request.content_type.lower()
    if content_type == "application/json":
        request = parse_send_mail(parse_json(ctx.body))
        message = request.message
        recipients = json_recipients(message)
        check_recipients(recipients)
        ctx.check_send_faults()
        if message.get("internetMessageHeaders") and ctx.state.faults.take_header_refusal():
            raise GraphFailure(
                400,
                "InvalidInternetMessageHeader",
                "The internet message header is not valid (injected fault).",
            )
        attachments = json_attachments(message.get("attachments") or [])
        mime = render_json_message(message, mailbox=ctx.mailbox, attachments=attachments)
        ctx.check_message_size(len(mime))
        await ctx.deliver(
            mode="json",
            mime=mime,
            recipients=recipients,
            message_json=message,
            attachments=attachments,
            save_to_sent_items=request.save_to_sent_items,
            subject=message.get("subject"),
        )
    elif content_type == "text/plain":
        data = decode_mime_body(ctx.body)
        parsed = parse_mime(data)
        recipients = mime_recipients(parsed)
        check_recipients(recipients)
        ctx.check_send_faults()
        ctx.check_message_size(len(data))
        await ctx.deliver(
            mode="mime",
            mime=data,
            recipients=recipients,
            message_json=None,
            attachments=mime_attachments(parsed),
            save_to_sent_items=True,
            subject=mime_subject(parsed),
        )
    else:
        raise GraphFailure(
            415,
            "UnsupportedMediaType",
            f"Content-Type '{content_type or '(none)'}' is not supported: send application/json "
            "or text/plain (base64 MIME).",
        )
    return ctx.empty(202)
