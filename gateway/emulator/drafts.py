"""The large-message path: drafts, attachments, upload sessions, and sending a draft.

`POST /users/{id}/messages` creates a draft from JSON or base64 MIME (201 + the message with its
`id`); attachments under 3 MB are POSTed to it, larger ones go through `createUploadSession`
(the bytes then arrive at the upload URL, see uploads.py); `POST …/send` with an empty body
(`Content-Length: 0`, else 411) submits it: 202, and the assembled message is delivered to the
outbox with mode "draft". Each step enforces the per-message size limit
(`ErrorMessageSizeExceeded`).
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from aiohttp import web

from gateway.emulator.context import GraphContext, GraphFailure, decode_mime_body
from gateway.emulator.mailstore import (
    FILE_ATTACHMENT,
    ITEM_ATTACHMENT,
    Draft,
    StoredAttachment,
    UploadSession,
    new_item_id,
)
from gateway.emulator.messages import (
    add_attachments,
    mime_attachments,
    mime_recipients,
    mime_subject,
    parse_mime,
    render_json_message,
)
from gateway.emulator.payloads import (
    check_recipients,
    json_recipients,
    parse_attachment,
    parse_json,
    parse_message,
    parse_upload_session,
)
from gateway.emulator.responses import odata_timestamp
from gateway.emulator.schema import decode_binary
from gateway.emulator.uploads import UPLOAD_PREFIX

UPLOAD_SESSION_LIFETIME = dt.timedelta(hours=2)
NOT_FOUND = "The specified object was not found in the store."


async def create_draft(ctx: GraphContext) -> web.Response:
    content_type = ctx.request.content_type.lower()
    now = dt.datetime.now(dt.UTC)
    if content_type == "text/plain":
        data = decode_mime_body(ctx.body)
        draft = _new_draft(ctx, message=None, mime=data, created=now)
    elif content_type == "application/json":
        message = parse_message(parse_json(ctx.body))
        inline = message.pop("attachments", None) or []
        draft = _new_draft(ctx, message=message, mime=None, created=now)
        draft.attachments.extend(_stored(a) for a in inline)
    else:
        raise GraphFailure(
            415, "UnsupportedMediaType", f"Content-Type '{content_type}' is not supported."
        )
    ctx.check_message_size(draft.size())
    ctx.state.store.drafts[draft.id] = draft
    return ctx.json(201, _draft_json(ctx, draft))


async def get_draft(ctx: GraphContext) -> web.Response:
    return ctx.json(200, _draft_json(ctx, _draft(ctx)))


async def delete_draft(ctx: GraphContext) -> web.Response:
    draft = _draft(ctx)
    ctx.state.store.remove_draft(draft.id)
    return ctx.empty(204)


async def add_attachment(ctx: GraphContext) -> web.Response:
    draft = _draft(ctx)
    attachment = _stored(parse_attachment(parse_json(ctx.body)))
    ctx.check_message_size(
        draft.size() + ctx.state.store.pending_upload_bytes(draft.id) + len(attachment.content)
    )
    draft.attachments.append(attachment)
    body = attachment.to_json(with_bytes=True)
    body["@odata.context"] = (
        f"{ctx.graph_base}/$metadata#users('{ctx.mailbox}')/messages('{draft.id}')/"
        "attachments/$entity"
    )
    return ctx.json(201, body)


async def create_upload_session(ctx: GraphContext) -> web.Response:
    draft = _draft(ctx)
    item = parse_upload_session(parse_json(ctx.body))
    kind = str(item.get("attachmentType") or "file").lower()
    if kind != "file":
        raise GraphFailure(
            400,
            "ErrorInvalidRequest",
            f"Upload sessions support attachmentType 'file' only, not '{kind}'.",
        )
    name, size = item.get("name"), item.get("size")
    if not name or not isinstance(size, int) or size < 0:
        raise GraphFailure(
            400, "ErrorInvalidRequest", "The AttachmentItem must have a name and a size."
        )
    if size < ctx.state.settings.min_upload_session_size:
        raise GraphFailure(
            400,
            "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
            "Attachment size must be greater than the minimum size.",
        )
    ctx.check_message_size(draft.size() + ctx.state.store.pending_upload_bytes(draft.id) + size)
    session = UploadSession(
        id=new_item_id(),
        secret=secrets.token_urlsafe(32),
        draft_id=draft.id,
        mailbox=ctx.mailbox,
        name=str(name),
        content_type=str(item.get("contentType") or "application/octet-stream"),
        is_inline=bool(item.get("isInline")),
        content_id=item.get("contentId"),
        size=size,
        expires=dt.datetime.now(dt.UTC) + UPLOAD_SESSION_LIFETIME,
    )
    ctx.state.store.sessions[session.id] = session
    base = ctx.state.external_base(ctx.request)
    upload_url = (
        f"{base}{UPLOAD_PREFIX}Users('{ctx.mailbox}')/Messages('{draft.id}')/"
        f"AttachmentSessions('{session.id}')?authtoken={session.secret}"
    )
    return ctx.json(
        201,
        {
            "@odata.context": f"{ctx.graph_base}/$metadata#microsoft.graph.uploadSession",
            "uploadUrl": upload_url,
            "expirationDateTime": odata_timestamp(session.expires),
            "nextExpectedRanges": session.next_expected(),
        },
    )


async def send_draft(ctx: GraphContext) -> web.Response:
    headers = ctx.request.headers
    if "Content-Length" not in headers or "Transfer-Encoding" in headers:
        raise GraphFailure(
            411, "LengthRequired", "Length Required: send this action with 'Content-Length: 0'."
        )
    if ctx.body:
        raise GraphFailure(
            400, "RequestBodyRead", "The send action takes no request body (Content-Length: 0)."
        )
    draft = _draft(ctx)
    extra = [a.delivered() for a in draft.attachments]
    if draft.mime is not None:
        parsed = parse_mime(draft.mime)
        recipients = mime_recipients(parsed)
        check_recipients(recipients)
        ctx.check_send_faults()
        mime = add_attachments(draft.mime, extra)
        attachments = mime_attachments(parsed) + extra
        message_json = None
        subject = mime_subject(parsed)
    else:
        message = draft.message or {}
        recipients = json_recipients(message)
        check_recipients(recipients)
        ctx.check_send_faults()
        mime = render_json_message(message, mailbox=ctx.mailbox, attachments=extra)
        attachments = extra
        message_json = dict(message)
        message_json["attachments"] = [a.to_json(with_bytes=True) for a in draft.attachments]
        subject = message.get("subject")
    ctx.check_message_size(len(mime))  # Exchange counts the encoded message, as sent
    pending = ctx.state.store.pending_upload_bytes(draft.id)
    if pending:  # Exchange sends what the draft holds; an unfinished upload is simply absent
        ctx.state.log.warning("emulator.unfinished_upload_dropped", draft=draft.id, size=pending)
    ctx.state.store.remove_draft(draft.id)
    await ctx.deliver(
        mode="draft",
        mime=mime,
        recipients=recipients,
        message_json=message_json,
        attachments=attachments,
        save_to_sent_items=True,
        subject=subject,
    )
    return ctx.empty(202)


def _draft(ctx: GraphContext) -> Draft:
    draft = ctx.state.store.draft(ctx.mailbox, ctx.message_id or "")
    if draft is None:
        raise GraphFailure(404, "ErrorItemNotFound", NOT_FOUND)
    return draft


def _new_draft(
    ctx: GraphContext, *, message: dict[str, Any] | None, mime: bytes | None, created: dt.datetime
) -> Draft:
    return Draft(
        id=new_item_id(),
        mailbox=ctx.mailbox,
        tenant_id=ctx.caller.tenant_id,
        client_id=ctx.caller.client_id,
        message=message,
        mime=mime,
        created=created,
    )


def _stored(attachment: dict[str, Any]) -> StoredAttachment:
    kind = attachment.get("@odata.type", "").removeprefix("#")
    odata_type = f"#{kind}"
    content = b""
    if odata_type == FILE_ATTACHMENT:
        content = decode_binary(attachment.get("contentBytes") or "")
    return StoredAttachment(
        id=new_item_id(),
        odata_type=odata_type,
        name=attachment.get("name") or "",
        content_type=attachment.get("contentType")
        or ("message/rfc822" if odata_type == ITEM_ATTACHMENT else "application/octet-stream"),
        content=content,
        is_inline=str(attachment.get("isInline")).lower() == "true",
        content_id=attachment.get("contentId"),
        item=attachment.get("item"),
    )


def _draft_json(ctx: GraphContext, draft: Draft) -> dict[str, Any]:
    """The message resource Graph returns for a draft."""
    created = draft.created.strftime("%Y-%m-%dT%H:%M:%SZ")
    if draft.mime is not None:
        parsed = parse_mime(draft.mime)
        recipients = mime_recipients(parsed)
        fields: dict[str, Any] = {
            "subject": mime_subject(parsed) or "",
            "body": {"contentType": "text", "content": ""},
            "toRecipients": _recipient_list(recipients["to"]),
            "ccRecipients": _recipient_list(recipients["cc"]),
            "bccRecipients": _recipient_list(recipients["bcc"]),
        }
    else:
        message = draft.message or {}
        fields = {
            key: message.get(key)
            for key in ("subject", "body", "from", "sender", "importance", "internetMessageId")
            if key in message
        }
        for key in ("toRecipients", "ccRecipients", "bccRecipients", "replyTo"):
            fields[key] = message.get(key) or []
    content = str((fields.get("body") or {}).get("content") or "")
    return {
        "@odata.context": f"{ctx.graph_base}/$metadata#users('{ctx.mailbox}')/messages/$entity",
        "@odata.etag": f'W/"{draft.change_key}"',
        "id": draft.id,
        "createdDateTime": created,
        "lastModifiedDateTime": created,
        "changeKey": draft.change_key,
        "categories": [],
        "receivedDateTime": created,
        "sentDateTime": created,
        "hasAttachments": bool(draft.attachments),
        "bodyPreview": content[:255],
        "importance": "normal",
        "parentFolderId": "AAMkAGDrafts",
        "conversationId": "AAQk" + draft.id[4:20],
        "isDeliveryReceiptRequested": False,
        "isReadReceiptRequested": False,
        "isRead": True,
        "isDraft": True,
        "webLink": f"{ctx.state.external_base(ctx.request)}/owa/?ItemID={draft.id}",
        "inferenceClassification": "focused",
        "flag": {"flagStatus": "notFlagged"},
        **fields,
    }


def _recipient_list(addresses: list[str]) -> list[dict[str, Any]]:
    return [{"emailAddress": {"address": a, "name": a}} for a in addresses]
