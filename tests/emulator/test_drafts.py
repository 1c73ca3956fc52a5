"""The large-message path: draft, attachments, upload session (with a resumed chunk), send."""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from typing import Any

import aiohttp
import pytest

from gateway.emulator import Emulator, EmulatorApp, Faults
from tests.emulator.conftest import StartEmulator
from tests.emulator.helpers import (
    CLIENT,
    MAILBOX,
    SECRET,
    TENANT,
    bearer,
    get_token,
    graph_client,
    json_message,
    mime_body,
)

CHUNK = 3 * 1024 * 1024


class Mailbox:
    """Graph calls for one mailbox with one token."""

    def __init__(self, http: aiohttp.ClientSession, emulator: Emulator, token: str) -> None:
        self.http, self.emulator, self.token = http, emulator, token
        self.base = f"{emulator.graph_endpoint}/users/{MAILBOX}"

    async def call(
        self, method: str, path: str, document: Any = None, **kwargs: Any
    ) -> tuple[int, Any, Any]:
        headers = bearer(self.token)
        if document is not None:
            kwargs["data"] = io.BytesIO(json.dumps(document).encode())
            headers["Content-Type"] = "application/json"
        async with self.http.request(
            method, f"{self.base}{path}", headers={**headers, **kwargs.pop("headers", {})}, **kwargs
        ) as response:
            text = await response.text()
            return response.status, (json.loads(text) if text else None), response.headers

    async def put_chunk(
        self, url: str, data: bytes, start: int, total: int, **headers: str
    ) -> tuple[int, Any, Any]:
        async with self.http.put(
            url,
            data=io.BytesIO(data),
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"bytes {start}-{start + len(data) - 1}/{total}",
                **headers,
            },
        ) as response:
            text = await response.text()
            return response.status, (json.loads(text) if text else None), response.headers


@pytest.fixture
async def mailbox(emulator: Emulator) -> AsyncIterator[Mailbox]:
    async with graph_client(emulator) as http:
        yield Mailbox(http, emulator, await get_token(http, emulator))


async def upload_session(mailbox: Mailbox, draft_id: str, size: int, **item: Any) -> dict[str, Any]:
    status, session, _ = await mailbox.call(
        "POST",
        f"/messages/{draft_id}/attachments/createUploadSession",
        {
            "AttachmentItem": {
                "attachmentType": "file",
                "name": "scan.tiff",
                "size": size,
                "contentType": "image/tiff",
                **item,
            }
        },
    )
    assert status == 201, session
    return dict(session)


async def test_seven_megabyte_attachment_with_a_failed_chunk_resumed(
    emulator: Emulator, mailbox: Mailbox
) -> None:
    payload = os.urandom(7_000_000)
    status, draft, _ = await mailbox.call(
        "POST", "/messages", json_message(bccRecipients=[{"emailAddress": {"address": "b@x.org"}}])
    )
    assert status == 201 and draft["isDraft"] is True
    status, small, _ = await mailbox.call(
        "POST",
        f"/messages/{draft['id']}/attachments",
        {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": "note.txt",
            "contentType": "text/plain",
            "contentBytes": base64.b64encode(b"page 1 of 1").decode(),
        },
    )
    assert status == 201 and small["size"] == 11
    session = await upload_session(mailbox, draft["id"], len(payload))
    url = session["uploadUrl"]
    assert url.startswith(f"{emulator.base_url}/api/v2.0/") and "/v1.0/" not in url
    assert session["nextExpectedRanges"] == ["0-"]

    status, progress, _ = await mailbox.put_chunk(url, payload[:CHUNK], 0, len(payload))
    assert (status, progress["nextExpectedRanges"]) == (200, [str(CHUNK)])
    emulator.set_faults(Faults(upload_fail_chunks=1))
    status, failed, _ = await mailbox.put_chunk(
        url, payload[CHUNK : 2 * CHUNK], CHUNK, len(payload)
    )
    assert (status, failed["error"]["code"]) == (500, "InternalServerError")
    async with mailbox.http.get(url) as response:  # where to resume
        resume_at = int((await response.json())["nextExpectedRanges"][0].rstrip("-"))
    assert resume_at == CHUNK
    position, status, headers = resume_at, 0, None
    while position < len(payload):
        chunk = payload[position : position + CHUNK]
        status, _, headers = await mailbox.put_chunk(url, chunk, position, len(payload))
        position += len(chunk)
    assert status == 201 and headers is not None
    assert "/Attachments('" in headers["Location"]

    status, body, _ = await mailbox.call("POST", f"/messages/{draft['id']}/send")
    assert (status, body) == (202, None)

    [delivered] = emulator.delivered()
    assert delivered.mode == "draft"
    assert delivered.recipients == {"to": ["alice@example.com"], "cc": [], "bcc": ["b@x.org"]}
    by_name = {a.name: a for a in delivered.attachments}
    assert by_name["scan.tiff"].content == payload
    assert by_name["note.txt"].content == b"page 1 of 1"
    parsed = message_from_bytes(delivered.mime, policy=policy.default)
    attached = {p.get_filename(): p.get_content() for p in parsed.iter_attachments()}
    assert attached["scan.tiff"] == payload
    assert delivered.message_json is not None
    assert [a["name"] for a in delivered.message_json["attachments"]] == ["note.txt", "scan.tiff"]
    # The draft is gone once sent.
    assert (await mailbox.call("GET", f"/messages/{draft['id']}"))[0] == 404


async def test_upload_url_refuses_bearer_tokens_and_out_of_order_chunks(
    mailbox: Mailbox,
) -> None:
    _, draft, _ = await mailbox.call("POST", "/messages", json_message())
    session = await upload_session(mailbox, draft["id"], 3_500_000)
    url, data = session["uploadUrl"], b"\0" * 1_000_000

    status, body, _ = await mailbox.put_chunk(
        url, data, 0, 3_500_000, Authorization=f"Bearer {mailbox.token}"
    )
    assert (status, body["error"]["code"]) == (401, "InvalidAuthenticationToken")
    status, body, _ = await mailbox.put_chunk(url, data, 1_000_000, 3_500_000)
    assert status == 416
    assert body["nextExpectedRanges"] == ["0-"]
    status, body, _ = await mailbox.put_chunk(url, b"\0" * (4 * 1024 * 1024), 0, 5_000_000)
    assert status == 400  # total does not match the announced attachment size
    status, body, _ = await mailbox.put_chunk(url, b"\0" * (4 * 1024 * 1024), 0, 3_500_000 + 2**22)
    assert status in (400, 413)
    async with mailbox.http.put(url.replace("authtoken=", "authtoken=x"), data=b"") as response:
        assert response.status == 404
    async with mailbox.http.delete(url) as response:
        assert response.status == 204
    async with mailbox.http.get(url) as response:
        assert response.status == 404


async def test_chunk_of_4_mib_is_too_large(start_emulator: StartEmulator) -> None:
    emulator = await start_emulator()
    async with graph_client(emulator) as http:
        box = Mailbox(http, emulator, await get_token(http, emulator))
        _, draft, _ = await box.call("POST", "/messages", json_message())
        session = await upload_session(box, draft["id"], 9_000_000)
        status, body, _ = await box.put_chunk(
            session["uploadUrl"], b"\0" * 4 * 1024 * 1024, 0, 9_000_000
        )
    assert (status, body["error"]["code"]) == (413, "RequestEntityTooLarge")


async def test_upload_session_for_a_small_file_is_refused(mailbox: Mailbox) -> None:
    _, draft, _ = await mailbox.call("POST", "/messages", json_message())
    status, body, _ = await mailbox.call(
        "POST",
        f"/messages/{draft['id']}/attachments/createUploadSession",
        {"AttachmentItem": {"attachmentType": "file", "name": "tiny.txt", "size": 2_000_000}},
    )
    assert (status, body["error"]["code"]) == (
        400,
        "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
    )


async def test_send_needs_an_empty_body_with_content_length(mailbox: Mailbox) -> None:
    _, draft, _ = await mailbox.call("POST", "/messages", json_message())

    status, body, _ = await mailbox.call("POST", f"/messages/{draft['id']}/send", {"x": 1})
    assert status == 400

    async def chunked() -> AsyncIterator[bytes]:
        yield b""

    status, body, _ = await mailbox.call("POST", f"/messages/{draft['id']}/send", data=chunked())
    assert (status, body["error"]["code"]) == (411, "LengthRequired")
    assert mailbox.emulator.delivered() == []


async def test_draft_from_mime_delete_and_unknown_ids(mailbox: Mailbox) -> None:
    raw = b"From: scanner@contoso.com\r\nTo: bob@example.com\r\nSubject: mime draft\r\n\r\nhi\r\n"
    async with mailbox.http.post(
        f"{mailbox.base}/messages",
        data=mime_body(raw),
        headers=bearer(mailbox.token, **{"Content-Type": "text/plain"}),
    ) as response:
        assert response.status == 201
        draft = await response.json()
    assert draft["subject"] == "mime draft"
    assert draft["toRecipients"][0]["emailAddress"]["address"] == "bob@example.com"

    assert (await mailbox.call("DELETE", f"/messages/{draft['id']}"))[0] == 204
    status, body, _ = await mailbox.call("POST", f"/messages/{draft['id']}/send")
    assert (status, body["error"]["code"]) == (404, "ErrorItemNotFound")


async def test_mime_draft_is_sent_with_its_added_attachment(mailbox: Mailbox) -> None:
    raw = b"From: scanner@contoso.com\r\nTo: bob@example.com\r\nSubject: s\r\n\r\nbody\r\n"
    async with mailbox.http.post(
        f"{mailbox.base}/messages",
        data=mime_body(raw),
        headers=bearer(mailbox.token, **{"Content-Type": "text/plain"}),
    ) as response:
        draft = await response.json()
    await mailbox.call(
        "POST",
        f"/messages/{draft['id']}/attachments",
        {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": "a.csv",
            "contentType": "text/csv",
            "contentBytes": base64.b64encode(b"a,b\r\n").decode(),
        },
    )
    assert (await mailbox.call("POST", f"/messages/{draft['id']}/send"))[0] == 202

    [delivered] = mailbox.emulator.delivered()
    parsed = message_from_bytes(delivered.mime, policy=policy.default)
    assert parsed["Subject"] == "s"
    assert [p.get_filename() for p in parsed.iter_attachments()] == ["a.csv"]
    assert delivered.recipients["to"] == ["bob@example.com"]


async def test_drafts_need_mail_readwrite(start_emulator: StartEmulator) -> None:
    emulator = await start_emulator(apps=(EmulatorApp(TENANT, CLIENT, SECRET),))  # Mail.Send only
    async with graph_client(emulator) as http:
        box = Mailbox(http, emulator, await get_token(http, emulator))
        status, body, _ = await box.call("POST", "/messages", json_message())
    assert (status, body["error"]["code"]) == (403, "ErrorAccessDenied")


async def test_message_size_limit(start_emulator: StartEmulator) -> None:
    emulator = await start_emulator(max_message_size=5_000_000)
    async with graph_client(emulator) as http:
        box = Mailbox(http, emulator, await get_token(http, emulator))
        _, draft, _ = await box.call("POST", "/messages", json_message())
        status, body, _ = await box.call(
            "POST",
            f"/messages/{draft['id']}/attachments/createUploadSession",
            {"AttachmentItem": {"attachmentType": "file", "name": "huge.iso", "size": 6_000_000}},
        )
    assert (status, body["error"]["code"]) == (400, "ErrorMessageSizeExceeded")
    assert body["error"]["message"] == "The message exceeds the maximum supported size."


async def test_send_without_recipients_is_refused(mailbox: Mailbox) -> None:
    _, draft, _ = await mailbox.call("POST", "/messages", json_message(toRecipients=[]))
    status, body, _ = await mailbox.call("POST", f"/messages/{draft['id']}/send")
    assert (status, body["error"]["code"]) == (400, "ErrorInvalidRecipients")
