"""Drafts and upload sessions held between requests (the large-message path's server state).

A draft lives from `POST /users/{id}/messages` until it is sent or deleted; attachments are
added to it by POST or through an upload session whose bytes arrive in ordered chunks. Ids look
like Exchange's (URL-safe base64 with `=` padding), so a client that mangles them in URLs fails
here as it would against the real service.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from dataclasses import dataclass, field
from typing import Any

from gateway.emulator.messages import DeliveredAttachment, render_json_message

FILE_ATTACHMENT = "#microsoft.graph.fileAttachment"
ITEM_ATTACHMENT = "#microsoft.graph.itemAttachment"


def new_item_id() -> str:
    """An Exchange-style item id: "AAMk" + URL-safe base64 (with one `=` of padding)."""
    return "AAMk" + base64.urlsafe_b64encode(secrets.token_bytes(41)).decode("ascii")


@dataclass
class StoredAttachment:
    id: str
    odata_type: str
    name: str
    content_type: str
    content: bytes
    is_inline: bool
    content_id: str | None
    item: dict[str, Any] | None = None
    modified: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def delivered(self) -> DeliveredAttachment:
        if self.odata_type == ITEM_ATTACHMENT:
            rendered = render_json_message(self.item or {}, mailbox=None, attachments=None)
            return DeliveredAttachment(
                self.name, "message/rfc822", rendered, self.is_inline, self.content_id
            )
        return DeliveredAttachment(
            self.name, self.content_type, self.content, self.is_inline, self.content_id
        )

    def to_json(self, *, with_bytes: bool) -> dict[str, Any]:
        result: dict[str, Any] = {
            "@odata.type": self.odata_type,
            "id": self.id,
            "lastModifiedDateTime": self.modified.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "name": self.name,
            "contentType": self.content_type,
            "size": len(self.content),
            "isInline": self.is_inline,
        }
        if self.odata_type == FILE_ATTACHMENT:
            result["contentId"] = self.content_id
            result["contentLocation"] = None
            if with_bytes:
                result["contentBytes"] = base64.b64encode(self.content).decode("ascii")
        elif self.item is not None:
            result["item"] = self.item
        return result


@dataclass
class Draft:
    id: str
    mailbox: str
    tenant_id: str
    client_id: str
    message: dict[str, Any] | None  # the JSON it was created from (without attachments)
    mime: bytes | None  # or the MIME it was created from
    created: dt.datetime
    attachments: list[StoredAttachment] = field(default_factory=list)
    change_key: str = field(default_factory=lambda: secrets.token_urlsafe(12))

    def size(self) -> int:
        """Bytes the message occupies so far: body or MIME, plus every attachment."""
        if self.mime is not None:
            base = len(self.mime)
        else:
            body = (self.message or {}).get("body") or {}
            base = len(str(body.get("content") or "").encode("utf-8"))
        return base + sum(len(a.content) for a in self.attachments)


@dataclass
class UploadSession:
    id: str
    secret: str
    draft_id: str
    mailbox: str
    name: str
    content_type: str
    is_inline: bool
    content_id: str | None
    size: int
    expires: dt.datetime
    data: bytearray = field(default_factory=bytearray)

    @property
    def received(self) -> int:
        return len(self.data)

    def next_expected(self) -> list[str]:
        """Outlook's form: "0-" before the first byte, then the single offset expected next."""
        return ["0-"] if self.received == 0 else [str(self.received)]


class MailStore:
    """All drafts and open upload sessions of one emulator run."""

    def __init__(self) -> None:
        self.drafts: dict[str, Draft] = {}
        self.sessions: dict[str, UploadSession] = {}

    def draft(self, mailbox: str, draft_id: str) -> Draft | None:
        draft = self.drafts.get(draft_id)
        return draft if draft is not None and draft.mailbox == mailbox else None

    def remove_draft(self, draft_id: str) -> None:
        self.drafts.pop(draft_id, None)
        for session_id in [s.id for s in self.sessions.values() if s.draft_id == draft_id]:
            del self.sessions[session_id]

    def pending_upload_bytes(self, draft_id: str) -> int:
        return sum(s.size for s in self.sessions.values() if s.draft_id == draft_id)

    def clear(self) -> None:
        self.drafts.clear()
        self.sessions.clear()
