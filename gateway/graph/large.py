"""The large-message path: a draft, its attachments uploaded in chunks, then `/send`.

A draft with the body and the small attachments (the rest of the small ones POSTed one by
one), an upload session for each attachment of 3 MB or more fed with chunks under 4 MB decoded
straight from the spooled message, resumed from `nextExpectedRanges` after a failed chunk, then
`/send`. A draft left by a failure is deleted (best effort, logged).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import structlog

from gateway.config import GRAPH_REQUEST_LIMIT
from gateway.graph.calls import RouteCalls
from gateway.graph.classify import Outcome, classify
from gateway.mime.buffer import Buffer
from gateway.mime.convert import Attachment, Conversion
from gateway.mime.parts import iter_decoded
from gateway.transport import Answer, Submission, TransportError

log = structlog.get_logger("gateway.delivery")

UPLOAD_MINIMUM = 3_000_000  # Graph refuses upload sessions for smaller attachments
CHUNK = 12 * 320 * 1024  # 3.75 MiB: under Graph's 4 MB per PUT, a multiple of 320 KiB
JSON_BUDGET = GRAPH_REQUEST_LIMIT - 256 * 1024  # what one JSON request may carry, with room
CHUNK_ATTEMPTS = 4  # tries per chunk before the delivery is deferred
FORM = "large"


def _ok(answer: Answer) -> bool:
    return 200 <= answer.status < 300


def json_size(conversion: Conversion) -> int:
    """About how many bytes the JSON request for `conversion` takes, attachments included."""
    body = conversion.message.get("body", {}).get("content", "")
    return (
        len(body.encode("utf-8", "surrogatepass")) * 6 // 5
        + sum(attachment.encoded_size for attachment in conversion.attachments)
        + 16 * 1024
    )


async def send_large(calls: RouteCalls, data: Buffer, conversion: Conversion) -> Submission:
    """Deliver through a draft and upload sessions; raises TransportError as the client does."""
    started = time.monotonic()
    where = _where(calls)
    big = [a for a in conversion.attachments if a.size >= UPLOAD_MINIMUM]
    small = [a for a in conversion.attachments if a.size < UPLOAD_MINIMUM]
    message, later = await asyncio.to_thread(draft_message, conversion, data, small)
    answer, draft = await calls.authorised(
        lambda token: calls.graph.create_draft(message=message, token=token, **where),
        lambda result: result[0],
    )
    message = {}  # the small attachments' base64 is not needed any more
    if not _ok(answer) or not draft:
        return _failed(answer, "creating the draft")
    try:
        for attachment in later:
            resource = await asyncio.to_thread(attachment.resource, data)
            answer = await calls.request(
                lambda token, resource=resource: calls.graph.add_attachment(  # type: ignore[misc]
                    draft=draft, attachment=resource, token=token, **where
                )
            )
            if not _ok(answer):
                return await _abandon(calls, draft, answer, "adding an attachment")
        for attachment in big:
            answer = await _upload(calls, data, draft, attachment)
            if not _ok(answer):
                return await _abandon(calls, draft, answer, "uploading an attachment")
    except TransportError:
        await _delete(calls, draft)
        raise
    answer = await calls.request(
        lambda token: calls.graph.send_draft(draft=draft, token=token, **where)
    )
    if not _ok(answer):
        return await _abandon(calls, draft, answer, "sending the draft")
    log.debug("large_message_sent", attachments=len(conversion.attachments), uploaded=len(big))
    answer = replace(answer, duration=time.monotonic() - started)
    return Submission(answer, classify(202, "").verdict, FORM)


def _where(calls: RouteCalls) -> dict[str, Any]:
    return {
        "graph_endpoint": calls.tenant.graph_endpoint,
        "mailbox": calls.route.graph_mailbox,
        "ca_file": calls.tenant.ca_file,
    }


async def _upload(calls: RouteCalls, data: Buffer, draft: str, attachment: Attachment) -> Answer:
    item = {**attachment.item(), "attachmentType": "file", "size": attachment.size}
    answer, upload_url = await calls.authorised(
        lambda token: calls.graph.create_upload_session(
            draft=draft, item=item, token=token, **_where(calls)
        ),
        lambda result: result[0],
    )
    if not _ok(answer) or not upload_url:
        return answer
    ca_file = calls.tenant.ca_file
    offset, failures, restarts = 0, 0, 0
    while restarts <= attachment.size // CHUNK + CHUNK_ATTEMPTS:
        restarts += 1
        async for start, chunk in _decoded(data, attachment, offset):
            try:
                answer, expected = await calls.graph.upload_chunk(
                    upload_url=upload_url,
                    chunk=chunk,
                    start=start,
                    total=attachment.size,
                    ca_file=ca_file,
                )
            except TransportError as error:
                answer, expected = Answer(status=0, message=error.reason), None
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
            expected = await _upload_status(calls, upload_url)
            offset = expected if expected is not None else start
            log.warning(
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


async def _upload_status(calls: RouteCalls, upload_url: str) -> int | None:
    """The offset an upload session expects next, or None if it cannot be asked."""
    try:
        _answer, expected = await calls.graph.upload_status(
            upload_url=upload_url, ca_file=calls.tenant.ca_file
        )
    except TransportError:
        return None
    return expected


async def _abandon(calls: RouteCalls, draft: str, answer: Answer, step: str) -> Submission:
    await _delete(calls, draft)
    return _failed(answer, step)


async def _delete(calls: RouteCalls, draft: str) -> None:
    """Delete a draft a failed delivery left in the mailbox (best effort, logged)."""
    try:
        answer = await calls.request(
            lambda token: calls.graph.delete_message(draft=draft, token=token, **_where(calls))
        )
    except Exception as error:  # noqa: BLE001 - best effort; the delivery outcome stands
        log.warning(
            "draft_left_behind",
            reason=type(error).__name__,
            action="delete it from the mailbox's Drafts folder",
        )
        return
    if not _ok(answer) and answer.status != 404:
        log.warning(
            "draft_left_behind",
            status=answer.status,
            code=answer.code,
            action="delete it from the mailbox's Drafts folder",
        )


def _failed(answer: Answer, step: str) -> Submission:
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
    return Submission(answer, outcome.verdict, FORM)


def draft_message(
    conversion: Conversion, data: Buffer, small: list[Attachment]
) -> tuple[dict[str, Any], list[Attachment]]:
    """The draft's JSON with as many small attachments as fit in one request, and the rest."""
    message = dict(conversion.message)
    budget = JSON_BUDGET - json_size(Conversion(conversion.message, ()))
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
    data: Buffer, attachment: Attachment, offset: int
) -> AsyncIterator[tuple[int, bytes]]:
    """`chunks`, each decoded in a worker thread (3.75 MiB of base64 is ~10 ms of CPU)."""
    pieces = chunks(data, attachment, offset)
    while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
        yield piece


def chunks(data: Buffer, attachment: Attachment, offset: int) -> Iterator[tuple[int, bytes]]:
    """(start, bytes) pieces of an attachment's decoded contents from `offset` on, each at most
    CHUNK long, decoded from the spooled message as they are needed."""
    position = 0
    for piece in iter_decoded(data, attachment.part, CHUNK):
        end = position + len(piece)
        if end > offset:
            cut = max(offset - position, 0)
            yield position + cut, piece[cut:]
        position = end
