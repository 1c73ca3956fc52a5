"""Graph as a transport: one message in the right form — raw MIME, message JSON, or the
large-message path (draft + upload sessions, see large.py).

The form follows the route's mode (`choose_form`): signed or encrypted mail always goes as
MIME, byte for byte; `auto` sends MIME when the message fits one request and takes the
large-message path otherwise; `json` converts. A route that keeps no copy in Sent Items
(`save_to_sent_items: false`) needs the JSON request, the only one that takes
`saveToSentItems`: `auto` converts its messages; signed mail and the large-message path (a
sent draft) are kept in Sent Items anyway, with a log line saying why.

Fallbacks keep mail moving, each logged with its reason: Graph refusing the custom headers →
the JSON again without them; a request too large (413) → the large-message path, when the
tenant allows it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from enum import StrEnum

import structlog

from gateway.config import MIME_SUBMISSION_LIMIT, SubmissionMode
from gateway.entra.tokens import TokenProviders
from gateway.graph.calls import RouteCalls
from gateway.graph.classify import classify
from gateway.graph.client import GraphClient
from gateway.graph.large import JSON_BUDGET, json_size, send_large
from gateway.mime.buffer import Buffer
from gateway.mime.convert import Conversion, convert, is_signed
from gateway.mime.headers import header_section
from gateway.mime.recipients import with_envelope_bcc
from gateway.mime.sender import rewrite_from
from gateway.routing import Route
from gateway.transport import Submission

log = structlog.get_logger("gateway.delivery")
_HEADER_CODES = ("InvalidInternetMessageHeader", "InvalidInternetMessageHeaderCollection")


class Form(StrEnum):
    """How one message goes to Graph."""

    MIME = "mime"
    JSON = "json"
    LARGE = "large"


def choose_form(route: Route, size: int, *, signed: bool) -> Form:
    """The form for a message of `size` bytes on `route` (pure)."""
    if signed or route.mode is SubmissionMode.MIME:
        return Form.MIME
    fits = size <= MIME_SUBMISSION_LIMIT
    if not fits and route.large:
        return Form.LARGE
    convert = route.mode is SubmissionMode.JSON or not route.save_to_sent_items
    return Form.JSON if convert else Form.MIME


class GraphTransport:
    """Sends messages through Graph; holds no state between messages."""

    def __init__(self, graph: GraphClient, tokens: TokenProviders) -> None:
        self._graph = graph
        self._tokens = tokens

    async def send(
        self, route: Route, message: Buffer, recipients: Sequence[str], *, trace: bytes = b""
    ) -> Submission:
        """Deliver `message` to `recipients` through `route`; raises TransportError as the
        Graph client and the token provider do. `trace` is prepended in the MIME form (JSON
        takes only x- headers, so the JSON and large-message forms go without it)."""
        calls = RouteCalls(self._graph, self._tokens, route)
        signed = is_signed(header_section(message))
        form = choose_form(route, len(message), signed=signed)
        if form is Form.MIME and not route.save_to_sent_items:
            _kept_in_sent_items(
                "signed or encrypted mail goes as MIME, byte for byte, and Graph's MIME "
                "sendMail always keeps a copy"
                if signed
                else "mode: mime sends MIME, and Graph's MIME sendMail always keeps a copy"
            )
        if form is Form.MIME:  # one request: at most 3 MB, read whole
            submitted = await self._mime(calls, bytes(message), recipients, trace)
            too_large = submitted.answer.status == 413
        else:
            conversion = await _convert(route, message, recipients)
            if form is Form.JSON and json_size(conversion) > JSON_BUDGET and route.large:
                form = Form.LARGE
            if form is Form.LARGE:
                _kept_large(route)
                return await send_large(calls, message, conversion)
            submitted = await self._json(calls, message, conversion)
            too_large = submitted.answer.status == 413
        if too_large and route.large and not signed:
            log.warning(
                "fallback",
                form_from=submitted.form,
                form_to=Form.LARGE.value,
                reason="Graph answered 413: the request is over its 4 MB limit",
            )
            _kept_large(route)
            return await send_large(calls, message, await _convert(route, message, recipients))
        return submitted

    async def _mime(
        self, calls: RouteCalls, data: bytes, recipients: Sequence[str], trace: bytes
    ) -> Submission:
        route = calls.route
        message = with_envelope_bcc(data, list(recipients)).message
        if route.rewrite_from:
            message = rewrite_from(message, route.mailbox, reply_to_sender=route.reply_to_sender)
        message = trace + message  # the trace field first, above every field of the message
        answer = await calls.request(
            lambda token: self._graph.send_mime(
                graph_endpoint=calls.tenant.graph_endpoint,
                mailbox=route.graph_mailbox,
                message=message,
                token=token,
                ca_file=calls.tenant.ca_file,
            )
        )
        return Submission(answer, classify(answer.status, answer.code).verdict, Form.MIME.value)

    async def _json(self, calls: RouteCalls, data: Buffer, conversion: Conversion) -> Submission:
        for attempt in range(2):
            message = await asyncio.to_thread(conversion.with_attachments, data)
            payload: dict[str, object] = {"message": message}
            if not calls.route.save_to_sent_items:
                payload["saveToSentItems"] = False
            answer = await calls.request(
                lambda token, payload=payload: self._graph.send_json(  # type: ignore[misc]
                    graph_endpoint=calls.tenant.graph_endpoint,
                    mailbox=calls.route.graph_mailbox,
                    payload=payload,
                    token=token,
                    ca_file=calls.tenant.ca_file,
                )
            )
            headers = conversion.message.get("internetMessageHeaders")
            if attempt == 0 and answer.code in _HEADER_CODES and headers:
                log.warning(
                    "fallback",
                    form_from="json",
                    form_to="json without custom headers",
                    reason=f"Graph refused the x- headers ({answer.code})",
                    headers=[header["name"] for header in headers],
                )
                conversion = conversion.without_custom_headers()
                continue
            break
        return Submission(answer, classify(answer.status, answer.code).verdict, Form.JSON.value)


def _kept_in_sent_items(reason: str) -> None:
    log.info("sent_items_kept", reason=f"save_to_sent_items is false, but {reason}")


def _kept_large(route: Route) -> None:
    if not route.save_to_sent_items:
        _kept_in_sent_items(
            "the large-message path sends a draft, and Graph keeps every sent draft in Sent Items"
        )


async def _convert(route: Route, data: Buffer, recipients: Sequence[str]) -> Conversion:
    """The message as Graph JSON, converted in a worker thread: a 40 MB message takes a tenth
    of a second, which the SMTP clients sharing the event loop must not wait for."""
    conversion = await asyncio.to_thread(
        convert,
        data,
        recipients,
        from_mailbox=route.mailbox if route.rewrite_from else "",
        reply_to_sender=route.reply_to_sender,
    )
    if conversion.dropped_headers:
        log.info(
            "headers_dropped",
            headers=list(conversion.dropped_headers),
            reason="Graph takes at most 5 x- headers in JSON; the first five were kept",
        )
    return conversion
