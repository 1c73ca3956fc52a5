"""What a Graph mail handler works with, and how an accepted message reaches the outbox.

The dispatcher in `graph.py` authenticates the caller, resolves the mailbox (from the URL, or the
signed-in user for `/me`), reads the body, and hands a `GraphContext` to the handler. Handlers
answer with `ctx.error(...)`/`ctx.json(...)` so every response has Graph's shape and headers.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.emulator.auth import Caller
from gateway.emulator.faults import InjectedError
from gateway.emulator.mailstore import new_item_id
from gateway.emulator.messages import DeliveredAttachment
from gateway.emulator.outbox import DeliveredMessage, Mode
from gateway.emulator.responses import graph_empty, graph_error, graph_json
from gateway.emulator.schema import SchemaError
from gateway.emulator.state import EmulatorState

INVALID_BASE64 = "Invalid base64 string for MIME content."
_WHITESPACE = re.compile(rb"[ \t\r\n]")


class GraphFailure(Exception):
    """Stop handling and answer with this Graph error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    @classmethod
    def from_schema(cls, error: SchemaError) -> GraphFailure:
        return cls(400, error.code, error.message)

    @classmethod
    def from_injected(cls, error: InjectedError) -> GraphFailure:
        return cls(error.status, error.code, error.message)


@dataclass(frozen=True)
class GraphContext:
    state: EmulatorState
    request: web.Request
    caller: Caller
    mailbox: str
    body: bytes
    message_id: str | None = None

    @property
    def graph_base(self) -> str:
        return f"{self.state.external_base(self.request)}/v1.0"

    def json(
        self, status: int, body: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        return graph_json(self.request, status, body, headers=headers)

    def empty(self, status: int, *, headers: Mapping[str, str] | None = None) -> web.Response:
        return graph_empty(self.request, status, headers=headers)

    def error(self, status: int, code: str, message: str) -> web.Response:
        return graph_error(self.request, status, code, message)

    def check_send_faults(self) -> None:
        """Mailbox refusals configured for sends (ErrorSendAsDenied and the like)."""
        injected = self.state.faults.mailbox_error(self.mailbox, sending=True)
        if injected is not None:
            raise GraphFailure.from_injected(injected)

    def check_message_size(self, size: int) -> None:
        if size > self.state.settings.max_message_size:
            raise GraphFailure(
                400, "ErrorMessageSizeExceeded", "The message exceeds the maximum supported size."
            )

    async def deliver(
        self,
        *,
        mode: Mode,
        mime: bytes,
        recipients: dict[str, list[str]],
        message_json: dict[str, Any] | None,
        attachments: Sequence[DeliveredAttachment],
        save_to_sent_items: bool,
        subject: str | None,
    ) -> DeliveredMessage:
        delivered = await self.state.outbox.deliver(
            DeliveredMessage(
                id=new_item_id(),
                mailbox=self.mailbox,
                mode=mode,
                mime=mime,
                recipients=recipients,
                message_json=message_json,
                attachments=list(attachments),
                client_id=self.caller.client_id,
                tenant_id=self.caller.tenant_id,
                save_to_sent_items=save_to_sent_items,
                received_at=dt.datetime.now(dt.UTC),
                subject=subject,
            )
        )
        self.state.log.info(
            "emulator.delivered",
            id=delivered.id,
            seq=delivered.seq,
            mailbox=delivered.mailbox,
            mode=mode,
            recipients=sum(len(v) for v in recipients.values()),
            size=len(mime),
        )
        return delivered


def decode_mime_body(body: bytes) -> bytes:
    """The MIME message in a text/plain request body (base64; line breaks allowed)."""
    compact = _WHITESPACE.sub(b"", body)
    if len(compact) % 4:
        raise GraphFailure(400, "ErrorMimeContentInvalidBase64String", INVALID_BASE64)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise GraphFailure(400, "ErrorMimeContentInvalidBase64String", INVALID_BASE64) from None
