"""The pre-authenticated upload URL of an attachment upload session (Outlook `AttachmentSessions`).

Shaped like the real one, `/api/v2.0/Users('…')/Messages('…')/AttachmentSessions('…')?authtoken=…`,
outside `/v1.0` and authorised by the token in the URL alone: a request that also carries an
`Authorization` header is refused (401), as the documentation warns. `PUT` takes
`Content-Range: bytes a-b/total` chunks strictly in order, each smaller than 4 MiB; an
intermediate chunk answers 200 with `nextExpectedRanges` (Outlook's single-offset form, e.g.
["2097152"]), the last one 201 with a `Location` header and an empty body. A chunk out of order
gets 416 with the expected offset; `GET` reports it (for resuming); `DELETE` cancels.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
from typing import Any

from aiohttp import web

from gateway.emulator.bodies import BodyTooLarge, discard_body, read_body
from gateway.emulator.mailstore import FILE_ATTACHMENT, StoredAttachment, UploadSession, new_item_id
from gateway.emulator.responses import graph_empty, graph_error, graph_json, odata_timestamp
from gateway.emulator.state import EmulatorState

UPLOAD_PREFIX = "/api/v2.0/"
_SESSION = re.compile(r"AttachmentSessions\('([^'/]*)'\)", re.IGNORECASE)
_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+)\s*$", re.IGNORECASE)


def session_mailbox(state: EmulatorState, path: str) -> str | None:
    """The mailbox whose upload session `path` names (for concurrency accounting)."""
    match = _SESSION.search(path)
    session = state.store.sessions.get(match.group(1)) if match else None
    return session.mailbox if session else None


class UploadRoutes:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_route("*", UPLOAD_PREFIX + "{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        if "Authorization" in request.headers:
            await discard_body(request)
            return graph_error(
                request,
                401,
                "InvalidAuthenticationToken",
                "The upload URL is pre-authenticated: do not send an Authorization header "
                "(a Graph token is not valid for this audience).",
            )
        session = self._session(request)
        if session is None:
            await discard_body(request)
            return graph_error(
                request,
                404,
                "ErrorItemNotFound",
                "The upload session was not found, was cancelled, or has expired.",
            )
        if request.method == "PUT":
            return await self._put(request, session)
        await discard_body(request)
        if request.method == "GET":
            return graph_json(request, 200, self._progress(request, session))
        if request.method == "DELETE":
            del self.state.store.sessions[session.id]
            return graph_empty(request, 204)
        return graph_error(
            request, 405, "Request_BadRequest", f"The method '{request.method}' is not allowed."
        )

    def _session(self, request: web.Request) -> UploadSession | None:
        match = _SESSION.search(request.path)
        session = self.state.store.sessions.get(match.group(1)) if match else None
        if session is None:
            return None
        token = request.query.get("authtoken", "")
        if not hmac.compare_digest(token.encode(), session.secret.encode()):
            return None
        if dt.datetime.now(dt.UTC) >= session.expires:
            del self.state.store.sessions[session.id]
            return None
        return session

    async def _put(self, request: web.Request, session: UploadSession) -> web.Response:
        settings = self.state.settings
        declared = request.content_length
        if declared is None:
            await discard_body(request)
            return graph_error(request, 411, "LengthRequired", "Content-Length is required.")
        try:
            body = await read_body(request, settings.max_request_size)
        except BodyTooLarge:
            return self._too_large(request)
        match = _RANGE.match(request.headers.get("Content-Range", ""))
        if match is None:
            return graph_error(
                request,
                400,
                "InvalidContentRange",
                "Content-Range must be 'bytes {start}-{end}/{total}'.",
            )
        start, end, total = (int(g) for g in match.groups())
        length = end - start + 1
        if total != session.size or end < start or end >= total:
            return graph_error(
                request,
                400,
                "InvalidContentRange",
                f"Content-Range bytes {start}-{end}/{total} does not fit the attachment of "
                f"{session.size} bytes.",
            )
        if length != len(body):
            return graph_error(
                request,
                400,
                "InvalidContentRange",
                f"Content-Range announces {length} bytes but the body has {len(body)}.",
            )
        if length >= settings.max_upload_chunk:
            return self._too_large(request)
        if start != session.received:
            return graph_error(
                request,
                416,
                "InvalidRange",
                f"The upload must continue at byte {session.received}, not {start}.",
                extra={"nextExpectedRanges": session.next_expected()},
            )
        if self.state.faults.take_upload_failure():
            return graph_error(
                request, 500, "InternalServerError", "An internal server error occurred."
            )
        session.data.extend(body)
        if session.received < session.size:
            return graph_json(request, 200, self._progress(request, session))
        return self._complete(request, session)

    def _complete(self, request: web.Request, session: UploadSession) -> web.Response:
        del self.state.store.sessions[session.id]
        draft = self.state.store.drafts.get(session.draft_id)
        if draft is None:
            return graph_error(
                request,
                404,
                "ErrorItemNotFound",
                "The specified object was not found in the store.",
            )
        attachment = StoredAttachment(
            id=new_item_id(),
            odata_type=FILE_ATTACHMENT,
            name=session.name,
            content_type=session.content_type,
            content=bytes(session.data),
            is_inline=session.is_inline,
            content_id=session.content_id,
        )
        draft.attachments.append(attachment)
        base = self.state.external_base(request)
        location = (
            f"{base}{UPLOAD_PREFIX}Users('{draft.mailbox}')/Messages('{draft.id}')/"
            f"Attachments('{attachment.id}')"
        )
        self.state.log.info(
            "emulator.upload_complete", draft=draft.id, name=session.name, size=session.size
        )
        return graph_empty(request, 201, headers={"Location": location})

    def _progress(self, request: web.Request, session: UploadSession) -> dict[str, Any]:
        base = self.state.external_base(request)
        return {
            "@odata.context": (
                f"{base}{UPLOAD_PREFIX}$metadata#Users('{session.mailbox}')/"
                f"Messages('{session.draft_id}')/AttachmentSessions/$entity"
            ),
            "ExpirationDateTime": odata_timestamp(session.expires),
            "nextExpectedRanges": session.next_expected(),
        }

    def _too_large(self, request: web.Request) -> web.Response:
        limit = self.state.settings.max_upload_chunk
        return graph_error(
            request,
            413,
            "RequestEntityTooLarge",
            f"Each upload chunk must be smaller than {limit} bytes (4 MiB).",
        )
