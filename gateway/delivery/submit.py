"""Submit one message to Graph in the right form: raw MIME, message JSON, or draft + uploads.

The form follows the route's mode (`choose_form`): signed or encrypted mail always goes as
MIME, byte for byte; `auto` sends MIME when the message fits one request and takes the
large-message path otherwise; `json` converts. Fallbacks keep mail moving, each logged with
its reason: Graph refusing the custom headers → the JSON again without them; a request too
large (413) → the large-message path, when the tenant allows it.

The large-message path: a draft with the body and the small attachments (the rest of the small
ones POSTed one by one), an upload session for each attachment of 3 MB or more fed with
chunks under 4 MB decoded straight from the spooled message, resumed from
`nextExpectedRanges` after a failed chunk, then `/send`. A draft left by a failure is deleted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from gateway.config import GRAPH_REQUEST_LIMIT, MIME_SUBMISSION_LIMIT, SubmissionMode, Transport
from gateway.delivery import smtp_oauth
from gateway.delivery.classify import Outcome, classify
from gateway.errors import TokenError
from gateway.graph.client import GraphAnswer, GraphClient, GraphTransportError
from gateway.graph.tokens import TokenProviders
from gateway.mime.convert import Attachment, Conversion, convert, is_signed
from gateway.mime.headers import header_section, remove_headers, split_message
from gateway.mime.parts import iter_decoded
from gateway.mime.recipients import with_envelope_bcc
from gateway.mime.sender import rewrite_from
from gateway.routing import Route

T = TypeVar("T")
Logger = Any  # structlog's bound logger

UPLOAD_MINIMUM = 3_000_000  # Graph refuses upload sessions for smaller attachments
CHUNK = 12 * 320 * 1024  # 3.75 MiB: under Graph's 4 MB per PUT, a multiple of 320 KiB
JSON_BUDGET = GRAPH_REQUEST_LIMIT - 256 * 1024  # what one JSON request may carry, with room
CHUNK_ATTEMPTS = 4  # tries per chunk before the delivery is deferred
_HEADER_CODES = ("InvalidInternetMessageHeader", "InvalidInternetMessageHeaderCollection")


class Form(StrEnum):
    """How one message goes to Microsoft 365."""

    MIME = "mime"
    JSON = "json"
    LARGE = "large"
    SMTP = "smtp"  # the SMTP OAuth transport (smtp.office365.com:587, XOAUTH2)


class Refusal(NamedTuple):
    """One recipient an SMTP server refused while it took the message for the others."""

    recipient: str
    code: int  # 4xx: try this recipient again later; 5xx: it failed
    text: str

    @property
    def reply(self) -> str:
        """The server's reply, as it said it."""
        return f"{self.code} {self.text}".strip()

    @property
    def temporary(self) -> bool:
        """True for a 4xx refusal."""
        return 400 <= self.code < 500


@dataclass(frozen=True, slots=True)
class Submitted:
    """The service's last answer for a message, what it means, and the form used."""

    answer: GraphAnswer
    outcome: Outcome
    form: Form
    refused: tuple[Refusal, ...] = ()  # recipients an SMTP server refused at RCPT TO


def choose_form(route: Route, size: int, *, signed: bool) -> Form:
    """The form for a message of `size` bytes on `route` (pure)."""
    if signed or route.mode is SubmissionMode.MIME:
        return Form.MIME
    fits = size <= MIME_SUBMISSION_LIMIT
    if not fits and route.large:
        return Form.LARGE
    return Form.JSON if route.mode is SubmissionMode.JSON else Form.MIME


def _ok(answer: GraphAnswer) -> bool:
    return 200 <= answer.status < 300


class Submitter:
    """Sends messages for the delivery engine; holds no state between messages."""

    def __init__(
        self, graph: GraphClient, tokens: TokenProviders, *, timeout: float = 60.0
    ) -> None:
        self._graph = graph
        self._tokens = tokens
        self._timeout = timeout

    async def submit(
        self, route: Route, data: bytes, recipients: list[str], bound: Logger
    ) -> Submitted:
        """Deliver `data` to `recipients` through `route`; raises GraphTransportError and
        TokenError as the Graph client and token provider do."""
        if route.tenant.transport is Transport.SMTP_OAUTH:
            return await self._smtp(route, data, recipients)
        signed = is_signed(header_section(data))
        form = choose_form(route, len(data), signed=signed)
        if form is Form.MIME:
            submitted = await self._mime(route, data, recipients)
        else:
            conversion = await self._convert(route, data, recipients, bound)
            if form is Form.JSON and _json_size(conversion) > JSON_BUDGET and route.large:
                form = Form.LARGE
            if form is Form.JSON:
                submitted = await self._json(route, data, conversion, bound)
            else:
                return await self._large(route, data, conversion, bound)
        if submitted.outcome.too_large and route.large and not signed:
            bound.warning(
                "fallback",
                form_from=submitted.form.value,
                form_to=Form.LARGE.value,
                reason="Graph answered 413: the request is over its 4 MB limit",
            )
            conversion = await self._convert(route, data, recipients, bound)
            return await self._large(route, data, conversion, bound)
        return submitted

    @staticmethod
    async def _convert(
        route: Route, data: bytes, recipients: list[str], bound: Logger
    ) -> Conversion:
        """The message as Graph JSON, converted in a worker thread: a 40 MB message takes a
        tenth of a second, which the SMTP clients sharing the event loop must not wait for."""
        conversion = await asyncio.to_thread(
            convert,
            data,
            recipients,
            from_mailbox=route.mailbox if route.rewrite_from else "",
            reply_to_sender=route.reply_to_sender,
        )
        _log_conversion(conversion, bound)
        return conversion

    async def _authorised(
        self,
        route: Route,
        call: Callable[[str], Awaitable[T]],
        answer_of: Callable[[T], GraphAnswer],
    ) -> T:
        """`call(token)`, once more with a fresh token when Graph refuses the token (401)."""
        provider = self._tokens.for_tenant(route.tenant)
        result = await call(await provider.get())
        if answer_of(result).status == 401:
            provider.invalidate()
            result = await call(await provider.get())
        return result

    async def _request(
        self, route: Route, call: Callable[[str], Awaitable[GraphAnswer]]
    ) -> GraphAnswer:
        return await self._authorised(route, call, lambda answer: answer)

    async def _smtp(self, route: Route, data: bytes, recipients: list[str]) -> Submitted:
        """Submit over SMTP with XOAUTH2: the envelope goes as it is (no Bcc header needed,
        and one the client left is removed); MAIL FROM is the mailbox signed in as."""
        head, rest = split_message(data)
        message = remove_headers(head, {"bcc"}) + rest if b"bcc:" in head.lower() else data
        if route.rewrite_from:
            message = rewrite_from(message, route.mailbox, reply_to_sender=route.reply_to_sender)
        tenant = route.tenant
        provider = self._tokens.for_tenant(tenant)
        host, port = tenant.smtp_endpoint
        for attempt in range(2):
            try:
                answer = await smtp_oauth.submit(
                    host=host,
                    port=port,
                    username=route.mailbox,
                    token=await provider.get(),
                    mail_from=route.mailbox,
                    recipients=recipients,
                    message=message,
                    ca_file=tenant.ca_file,
                    timeout=self._timeout,
                )
            except smtp_oauth.SmtpTransportError as error:
                raise GraphTransportError(error.reason, sent=error.sent) from None
            result, explanation = smtp_oauth.classify_smtp(answer)
            if result != smtp_oauth.CREDENTIALS:
                break
            provider.invalidate()  # a token refused at AUTH: once more with a fresh one
            if attempt == 1:
                raise TokenError(f"tenant {tenant.name}: {explanation}", code=f"SMTP {answer.code}")
        graph_like = GraphAnswer(
            status=answer.code,
            code=f"SMTP {answer.code}" if answer.code else "SMTP",
            message=answer.text,
            duration=answer.duration,
        )
        outcome = Outcome(
            delivered=result == smtp_oauth.DELIVERED,
            permanent=result == smtp_oauth.HOLD,
            explanation=explanation,
        )
        refused = tuple(
            Refusal(recipient, code, text)
            for recipient, (code, text) in zip(answer.refused, answer.refused_replies, strict=False)
        )
        return Submitted(graph_like, outcome, Form.SMTP, refused)

    async def _mime(self, route: Route, data: bytes, recipients: list[str]) -> Submitted:
        message = with_envelope_bcc(data, recipients).message
        if route.rewrite_from:
            message = rewrite_from(message, route.mailbox, reply_to_sender=route.reply_to_sender)
        tenant = route.tenant
        answer = await self._request(
            route,
            lambda token: self._graph.send_mime(
                graph_endpoint=tenant.graph_endpoint,
                mailbox=route.graph_mailbox,
                message=message,
                token=token,
                ca_file=tenant.ca_file,
            ),
        )
        return Submitted(answer, classify(answer.status, answer.code), Form.MIME)

    async def _json(
        self, route: Route, data: bytes, conversion: Conversion, bound: Logger
    ) -> Submitted:
        tenant = route.tenant
        for attempt in range(2):
            message = await asyncio.to_thread(conversion.with_attachments, data)
            payload: dict[str, object] = {"message": message}
            answer = await self._request(
                route,
                lambda token, payload=payload: self._graph.send_json(  # type: ignore[misc]
                    graph_endpoint=tenant.graph_endpoint,
                    mailbox=route.graph_mailbox,
                    payload=payload,
                    token=token,
                    ca_file=tenant.ca_file,
                ),
            )
            headers = conversion.message.get("internetMessageHeaders")
            if attempt == 0 and answer.code in _HEADER_CODES and headers:
                bound.warning(
                    "fallback",
                    form_from="json",
                    form_to="json without custom headers",
                    reason=f"Graph refused the x- headers ({answer.code})",
                    headers=[header["name"] for header in headers],
                )
                conversion = conversion.without_custom_headers()
                continue
            break
        return Submitted(answer, classify(answer.status, answer.code), Form.JSON)

    async def _large(
        self, route: Route, data: bytes, conversion: Conversion, bound: Logger
    ) -> Submitted:
        started = time.monotonic()
        tenant = route.tenant
        where: dict[str, Any] = {
            "graph_endpoint": tenant.graph_endpoint,
            "mailbox": route.graph_mailbox,
            "ca_file": tenant.ca_file,
        }
        big = [a for a in conversion.attachments if a.size >= UPLOAD_MINIMUM]
        small = [a for a in conversion.attachments if a.size < UPLOAD_MINIMUM]
        message, later = await asyncio.to_thread(_draft, conversion, data, small)
        answer, draft = await self._authorised(
            route,
            lambda token: self._graph.create_draft(message=message, token=token, **where),
            lambda result: result[0],
        )
        message = {}  # the small attachments' base64 is not needed any more
        if not _ok(answer) or not draft:
            return _failed(answer, "creating the draft")
        bound = bound.bind(draft=True)
        try:
            for attachment in later:
                resource = await asyncio.to_thread(attachment.resource, data)
                answer = await self._request(
                    route,
                    lambda token, resource=resource: self._graph.add_attachment(  # type: ignore[misc]
                        draft=draft, attachment=resource, token=token, **where
                    ),
                )
                if not _ok(answer):
                    return await self._abandon(route, draft, answer, "adding an attachment", bound)
            for attachment in big:
                answer = await self._upload(route, data, draft, attachment, bound)
                if not _ok(answer):
                    return await self._abandon(route, draft, answer, "uploading an attachment",
                                               bound)
        except GraphTransportError:
            await self._delete(route, draft, bound)
            raise
        answer = await self._request(
            route, lambda token: self._graph.send_draft(draft=draft, token=token, **where)
        )
        if not _ok(answer):
            return await self._abandon(route, draft, answer, "sending the draft", bound)
        bound.debug("large_message_sent", attachments=len(conversion.attachments),
                    uploaded=len(big))
        answer = replace(answer, duration=time.monotonic() - started)
        return Submitted(answer, classify(202, ""), Form.LARGE)

    async def _upload(
        self, route: Route, data: bytes, draft: str, attachment: Attachment, bound: Logger
    ) -> GraphAnswer:
        tenant = route.tenant
        item = {**attachment.item(), "attachmentType": "file", "size": attachment.size}
        answer, upload_url = await self._authorised(
            route,
            lambda token: self._graph.create_upload_session(
                graph_endpoint=tenant.graph_endpoint, mailbox=route.graph_mailbox, draft=draft,
                item=item, token=token, ca_file=tenant.ca_file,
            ),
            lambda result: result[0],
        )
        if not _ok(answer) or not upload_url:
            return answer
        offset, failures, restarts = 0, 0, 0
        while restarts <= attachment.size // CHUNK + CHUNK_ATTEMPTS:
            restarts += 1
            async for start, chunk in _decoded(data, attachment, offset):
                try:
                    answer, expected = await self._graph.upload_chunk(
                        upload_url=upload_url, chunk=chunk, start=start, total=attachment.size,
                        ca_file=tenant.ca_file,
                    )
                except GraphTransportError as error:
                    answer, expected = GraphAnswer(status=0, message=error.reason), None
                if answer.status == 201:
                    return answer  # the last byte arrived: the attachment is complete
                if _ok(answer):
                    if expected is not None and expected != start + len(chunk):
                        offset = expected  # Graph wants another offset: go on from there
                        break
                    continue
                failures += 1
                refused = 400 <= answer.status < 500 and answer.status not in (408, 416, 429)
                if failures >= CHUNK_ATTEMPTS or refused:
                    return answer
                expected = await self._upload_status(upload_url, tenant.ca_file)
                offset = expected if expected is not None else start
                bound.warning(
                    "upload_resumed",
                    status=answer.status or None,
                    reason=answer.message or answer.code,
                    failed_at=start,
                    resume_at=offset,
                )
                break
            else:
                return answer  # every chunk taken (Graph said 200 to the last one)
        return answer

    async def _upload_status(self, upload_url: str, ca_file: Path | None) -> int | None:
        """The offset an upload session expects next, or None if it cannot be asked."""
        try:
            _answer, expected = await self._graph.upload_status(
                upload_url=upload_url, ca_file=ca_file
            )
        except GraphTransportError:
            return None
        return expected

    async def _abandon(
        self, route: Route, draft: str, answer: GraphAnswer, step: str, bound: Logger
    ) -> Submitted:
        await self._delete(route, draft, bound)
        return _failed(answer, step)

    async def _delete(self, route: Route, draft: str, bound: Logger) -> None:
        """Delete a draft a failed delivery left in the mailbox (best effort, logged)."""
        tenant = route.tenant
        try:
            answer = await self._request(
                route,
                lambda token: self._graph.delete_message(
                    graph_endpoint=tenant.graph_endpoint, mailbox=route.graph_mailbox, draft=draft,
                    token=token, ca_file=tenant.ca_file,
                ),
            )
        except Exception as error:  # noqa: BLE001 - best effort; the delivery outcome stands
            bound.warning("draft_left_behind", reason=type(error).__name__,
                          action="delete it from the mailbox's Drafts folder")
            return
        if not _ok(answer) and answer.status != 404:
            bound.warning("draft_left_behind", status=answer.status, code=answer.code,
                          action="delete it from the mailbox's Drafts folder")


def _failed(answer: GraphAnswer, step: str) -> Submitted:
    outcome = classify(answer.status, answer.code)
    if answer.status == 0:
        outcome = Outcome(explanation=f"{step} failed: {answer.message}")
    elif answer.status == 403 and answer.code == "ErrorAccessDenied":
        outcome = replace(
            outcome,
            explanation=f"{step} was refused: the large-message path needs the Mail.ReadWrite "
            f"application permission (with admin consent) besides Mail.Send; "
            f"{outcome.explanation}",
        )
    elif outcome.explanation:
        outcome = replace(outcome, explanation=f"{step}: {outcome.explanation}")
    return Submitted(answer, outcome, Form.LARGE)


def _json_size(conversion: Conversion) -> int:
    body = conversion.message.get("body", {}).get("content", "")
    return len(body.encode("utf-8", "surrogatepass")) * 6 // 5 + sum(
        attachment.encoded_size for attachment in conversion.attachments
    ) + 16 * 1024


def _draft(
    conversion: Conversion, data: bytes, small: list[Attachment]
) -> tuple[dict[str, Any], list[Attachment]]:
    """The draft's JSON with as many small attachments as fit in one request, and the rest."""
    message = dict(conversion.message)
    budget = JSON_BUDGET - _json_size(Conversion(conversion.message, ()))
    inline: list[dict[str, Any]] = []
    later: list[Attachment] = []
    for attachment in small:
        if attachment.encoded_size <= budget:
            budget -= attachment.encoded_size
            inline.append(attachment.resource(data))
        else:
            later.append(attachment)
    if inline:
        message["attachments"] = inline
    return message, later


async def _decoded(
    data: bytes, attachment: Attachment, offset: int
) -> AsyncIterator[tuple[int, bytes]]:
    """`_chunks`, each decoded in a worker thread (3.75 MiB of base64 is ~10 ms of CPU)."""
    pieces = _chunks(data, attachment, offset)
    while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
        yield piece


def _chunks(data: bytes, attachment: Attachment, offset: int) -> Iterator[tuple[int, bytes]]:
    """(start, bytes) pieces of an attachment's decoded contents from `offset` on, each at most
    CHUNK long, decoded from the spooled message as they are needed."""
    position = 0
    for piece in iter_decoded(data, attachment.part, CHUNK):
        end = position + len(piece)
        if end > offset:
            cut = max(offset - position, 0)
            yield position + cut, piece[cut:]
        position = end


def _log_conversion(conversion: Conversion, bound: Logger) -> None:
    if conversion.dropped_headers:
        bound.info(
            "headers_dropped",
            headers=list(conversion.dropped_headers),
            reason="Graph takes at most 5 x- headers in JSON; the first five were kept",
        )
