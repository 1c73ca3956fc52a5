"""sendMail over HTTPS: what is accepted and recorded, and every refusal in Graph's shape."""

from __future__ import annotations

import base64
import io
import json
import uuid
from email import message_from_bytes, policy
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from gateway.emulator import Emulator, EmulatorApp
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


async def send(
    http: aiohttp.ClientSession,
    emulator: Emulator,
    token: str | None,
    *,
    json_body: Any = None,
    data: bytes | None = None,
    content_type: str = "application/json",
    mailbox: str = MAILBOX,
    path: str | None = None,
) -> tuple[int, dict[str, Any] | None, CIMultiDictProxy[str]]:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body = json.dumps(json_body).encode() if json_body is not None else (data or b"")
    url = f"{emulator.graph_endpoint}/{path or f'users/{mailbox}/sendMail'}"
    async with http.post(url, data=io.BytesIO(body), headers=headers) as response:
        text = await response.text()
        return response.status, (json.loads(text) if text else None), response.headers


def assert_graph_error(status: int, body: dict[str, Any] | None, headers: Any, code: str) -> str:
    assert body is not None
    assert body["error"]["code"] == code, body
    inner = body["error"]["innerError"]
    assert inner["request-id"] == headers["request-id"]
    assert inner["client-request-id"] == headers["client-request-id"]
    assert inner["date"]
    message: str = body["error"]["message"]
    return message


async def test_json_message_is_accepted_and_recorded(emulator: Emulator) -> None:
    attachment = b"%PDF-1.7 scanned page"
    message = json_message(
        ccRecipients=[{"emailAddress": {"address": "bob@example.com"}}],
        bccRecipients=[{"emailAddress": {"address": "audit@example.com"}}],
        importance="High",
        internetMessageHeaders=[{"name": "X-Scanner", "value": "floor-2"}],
        attachments=[
            {
                "@odata.type": "#microsoft.graph.fileAttachment",
                "name": "scan.pdf",
                "contentType": "application/pdf",
                "contentBytes": base64.b64encode(attachment).decode(),
            }
        ],
    )
    async with graph_client(emulator) as http:
        token = await get_token(http, emulator)
        status, body, headers = await send(
            http, emulator, token, json_body={"message": message, "saveToSentItems": False}
        )

    assert (status, body) == (202, None)
    assert headers["request-id"] and headers["client-request-id"]
    [delivered] = emulator.delivered()
    assert delivered.mode == "json"
    assert delivered.mailbox == MAILBOX
    assert delivered.recipients == {
        "to": ["alice@example.com"],
        "cc": ["bob@example.com"],
        "bcc": ["audit@example.com"],
    }
    assert delivered.save_to_sent_items is False
    assert delivered.message_json == message
    assert delivered.attachments[0].content == attachment
    assert (delivered.tenant_id, delivered.client_id) == (TENANT, CLIENT)
    # The outbox holds an .eml a person can open, and the metadata beside it.
    eml = (emulator.outbox_dir / f"000001-{delivered.id}.eml").read_bytes()
    assert eml == delivered.mime
    parsed = message_from_bytes(eml, policy=policy.default)
    assert parsed["Subject"] == "Scan from the 2nd floor"
    assert parsed["X-Scanner"] == "floor-2"
    assert parsed["Importance"] == "High"
    [part] = list(parsed.iter_attachments())
    assert part.get_filename() == "scan.pdf" and part.get_content() == attachment
    meta = json.loads((emulator.outbox_dir / f"000001-{delivered.id}.json").read_text())
    assert meta["recipients"]["bcc"] == ["audit@example.com"]
    assert meta["attachments"][0]["size"] == len(attachment)
    assert meta["message_json"]["attachments"][0]["contentBytes"] is None  # bytes live in .eml


async def test_mime_message_recipients_come_from_its_headers(emulator: Emulator) -> None:
    raw = (
        b"From: Scanner <scanner@contoso.com>\r\n"
        b"To: =?utf-8?q?J=C3=BCrgen?= <juergen@example.com>,\r\n"
        b'\t"Doe, Jane" <jane@example.com>\r\n'
        b"Cc: finance: one@example.com, two@example.com;\r\n"
        b"Bcc: hidden@example.com\r\n"
        b"Subject: folded\r\n  subject\r\n"
        b"Message-ID: <abc@contoso.com>\r\n"
        b"\r\n"
        b"Hello.\r\n"
    )
    wrapped = base64.encodebytes(raw)  # line-wrapped base64 is fine for Graph
    async with graph_client(emulator) as http:
        token = await get_token(http, emulator)
        status, _, _ = await send(http, emulator, token, data=wrapped, content_type="text/plain")

    assert status == 202
    [delivered] = emulator.delivered()
    assert delivered.mode == "mime"
    assert delivered.mime == raw  # exactly the submitted bytes
    assert delivered.recipients == {
        "to": ["juergen@example.com", "jane@example.com"],
        "cc": ["one@example.com", "two@example.com"],
        "bcc": ["hidden@example.com"],
    }
    assert delivered.message_json is None
    assert (emulator.outbox_dir / f"000001-{delivered.id}.eml").read_bytes() == raw


async def test_pascal_case_parameters_and_string_boolean_are_accepted(emulator: Emulator) -> None:
    # Microsoft's SDKs send "Message"/"SaveToSentItems"; a docs example sends "false".
    async with graph_client(emulator) as http:
        token = await get_token(http, emulator)
        status, _, _ = await send(
            http,
            emulator,
            token,
            json_body={
                "Message": json_message(body={"contentType": "HTML", "content": "<p>x</p>"}),
                "SaveToSentItems": "false",
            },
        )
    assert status == 202
    [delivered] = emulator.delivered()
    assert delivered.save_to_sent_items is False
    assert message_from_bytes(delivered.mime, policy=policy.default).get_content_type() == (
        "text/html"
    )


async def test_client_request_id_is_echoed(emulator: Emulator) -> None:
    mine = str(uuid.uuid4())
    async with graph_client(emulator) as http:
        token = await get_token(http, emulator)
        async with http.post(
            f"{emulator.graph_endpoint}/users/{MAILBOX}/sendMail",
            json={"message": json_message()},
            headers=bearer(token, **{"client-request-id": mine}),
        ) as response:
            assert response.status == 202
            assert response.headers["client-request-id"] == mine


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (None, "Access token is empty."),
        ("not-a-jwt", "CompactToken parsing failed with error code: 80049217"),
        ("e30.e30.c2ln", "Access token validation failure. Invalid signature."),
    ],
)
async def test_missing_or_foreign_token_is_401(
    emulator: Emulator, token: str | None, message: str
) -> None:
    async with graph_client(emulator) as http:
        status, body, headers = await send(http, emulator, token, json_body={"message": {}})
    assert status == 401
    assert assert_graph_error(status, body, headers, "InvalidAuthenticationToken") == message
    assert "Bearer" in headers["WWW-Authenticate"]
    assert emulator.delivered() == []


async def test_token_from_another_emulator_run_is_401(start_emulator: StartEmulator) -> None:
    first, second = await start_emulator(), await start_emulator()
    async with graph_client(first) as http:
        token = await get_token(http, first)
    async with graph_client(second) as http:
        status, body, headers = await send(http, second, token, json_body={"message": {}})
    assert status == 401
    assert_graph_error(status, body, headers, "InvalidAuthenticationToken")


async def test_expired_token_is_401(start_emulator: StartEmulator) -> None:
    emulator = await start_emulator(token_lifetime=0)
    async with graph_client(emulator) as http:
        token = await get_token(http, emulator)
        status, body, headers = await send(http, emulator, token, json_body={"message": {}})
    assert status == 401
    message = assert_graph_error(status, body, headers, "InvalidAuthenticationToken")
    assert message == "Lifetime validation failed, the token is expired."


async def test_token_for_another_resource_is_401(emulator: Emulator) -> None:
    async with graph_client(emulator) as http:
        token = await get_token(http, emulator, scope="https://outlook.office365.com/.default")
        status, body, headers = await send(http, emulator, token, json_body={"message": {}})
    assert status == 401
    assert "Invalid audience" in assert_graph_error(
        status, body, headers, "InvalidAuthenticationToken"
    )


async def test_token_scoped_to_the_emulator_origin_is_accepted(emulator: Emulator) -> None:
    # A gateway derives the scope from a configured graph_endpoint: https://host:port/.default
    async with graph_client(emulator) as http:
        token = await get_token(http, emulator, scope=f"{emulator.base_url}/.default")
        status, _, _ = await send(http, emulator, token, json_body={"message": json_message()})
    assert status == 202


async def test_token_without_mail_send_role_is_403(start_emulator: StartEmulator) -> None:
    emulator = await start_emulator(apps=(EmulatorApp(TENANT, CLIENT, SECRET, roles=()),))
    async with graph_client(emulator) as http:
        token = await get_token(http, emulator)
        status, body, headers = await send(
            http, emulator, token, json_body={"message": json_message()}
        )
    assert status == 403
    message = assert_graph_error(status, body, headers, "ErrorAccessDenied")
    assert message == "Access is denied. Check credentials and try again."


async def test_me_with_an_app_token_is_400(emulator: Emulator) -> None:
    async with graph_client(emulator) as http:
        token = await get_token(http, emulator)
        status, body, headers = await send(
            http, emulator, token, json_body={"message": json_message()}, path="me/sendMail"
        )
    assert status == 400
    message = assert_graph_error(status, body, headers, "BadRequest")
    assert message == "/me request is only valid with delegated authentication flow."


async def test_body_over_4_mb_is_413(emulator: Emulator) -> None:
    big = base64.b64encode(b"x" * 3_200_000).decode()  # 4.27 MB of base64
    message = json_message(
        attachments=[
            {
                "@odata.type": "#microsoft.graph.fileAttachment",
                "name": "big.bin",
                "contentBytes": big,
            }
        ]
    )
    async with graph_client(emulator) as http:
        token = await get_token(http, emulator)
        status, body, headers = await send(http, emulator, token, json_body={"message": message})
    assert status == 413
    assert assert_graph_error(status, body, headers, "RequestEntityTooLarge") == (
        "The maximum request length supported is 4MB."
    )
    assert emulator.delivered() == []


BAD_BODIES = [
    pytest.param(
        {"message": json_message(toRecipient=[])},
        "RequestBodyRead",
        "The property 'toRecipient' does not exist on type 'microsoft.graph.message'.",
        id="unknown-property",
    ),
    pytest.param(
        {"message": json_message(subject={"text": "x"})},
        "RequestBodyRead",
        "An unexpected 'StartObject' node was found for property named 'subject'",
        id="object-for-string",
    ),
    pytest.param(
        {"message": json_message(toRecipients={"emailAddress": {"address": "a@example.com"}})},
        "RequestBodyRead",
        "however, a 'StartArray' node was expected",
        id="object-for-array",
    ),
    pytest.param(
        {"message": json_message(importance="urgent")},
        "RequestBodyRead",
        "Cannot convert the literal 'urgent' to the expected type 'microsoft.graph.importance'",
        id="bad-enum",
    ),
    pytest.param(
        {"message": json_message(isReadReceiptRequested="maybe")},
        "RequestBodyRead",
        "expected type 'Edm.Boolean'",
        id="bad-boolean",
    ),
    pytest.param(
        {"message": json_message(attachments=[{"name": "a.txt", "contentBytes": "YQ=="}])},
        "RequestBodyRead",
        "An instance of abstract resource type 'microsoft.graph.attachment' was found.",
        id="attachment-without-odata-type",
    ),
    pytest.param(
        {
            "message": json_message(
                attachments=[
                    {
                        "@odata.type": "#microsoft.graph.fileAttachment",
                        "name": "a.txt",
                        "contentBytes": "not base64!",
                    }
                ]
            )
        },
        "RequestBodyRead",
        "expected type 'Edm.Binary'",
        id="bad-content-bytes",
    ),
    pytest.param(
        {"message": json_message(internetMessageHeaders=[{"name": "In-Reply-To", "value": "<a>"}])},
        "InvalidInternetMessageHeader",
        "The internet message header name 'In-Reply-To' should start with 'x-' or 'X-'.",
        id="header-not-x",
    ),
    pytest.param(
        {
            "message": json_message(
                internetMessageHeaders=[{"name": f"x-h{i}", "value": "v"} for i in range(6)]
            )
        },
        "InvalidInternetMessageHeaderCollection",
        "Maximum number of headers in one message should be less than or equal to 5.",
        id="six-headers",
    ),
    pytest.param(
        {"message": json_message(internetMessageHeaders=[])},
        "InvalidInternetMessageHeaderCollection",
        "",
        id="empty-header-list",
    ),
    pytest.param(
        {"message": json_message(toRecipients=[])},
        "ErrorInvalidRecipients",
        "At least one recipient is not valid., A message can't be sent because it contains no "
        "recipients.",
        id="no-recipients",
    ),
    pytest.param(
        {"message": json_message(toRecipients=[{"emailAddress": {"address": "not an address"}}])},
        "ErrorInvalidRecipients",
        "Recipient 'not an address' is not resolved.",
        id="unresolvable-recipient",
    ),
    pytest.param(
        {"message": json_message(), "saveToSentItem": True},
        "RequestBodyRead",
        "The parameter 'saveToSentItem' in the request payload is not a valid parameter for the "
        "operation 'sendMail'.",
        id="unknown-parameter",
    ),
    pytest.param({}, "RequestBodyRead", "The parameter 'Message'", id="no-message"),
]


@pytest.mark.parametrize(("document", "code", "message"), BAD_BODIES)
async def test_invalid_json_bodies_are_400_with_graphs_code(
    emulator: Emulator, document: dict[str, Any], code: str, message: str
) -> None:
    async with graph_client(emulator) as http:
        token = await get_token(http, emulator)
        status, body, headers = await send(http, emulator, token, json_body=document)
    assert status == 400
    assert message in assert_graph_error(status, body, headers, code)
    assert emulator.delivered() == []


@pytest.mark.parametrize(
    ("data", "code", "message"),
    [
        (
            b"this is not base64!",
            "ErrorMimeContentInvalidBase64String",
            "Invalid base64 string for MIME content.",
        ),
        (
            mime_body(b"From: a@contoso.com\r\nSubject: nobody\r\n\r\nhi\r\n"),
            "ErrorInvalidRecipients",
            "A message can't be sent because it contains no recipients.",
        ),
    ],
)
async def test_invalid_mime_bodies_are_400(
    emulator: Emulator, data: bytes, code: str, message: str
) -> None:
    async with graph_client(emulator) as http:
        token = await get_token(http, emulator)
        status, body, headers = await send(
            http, emulator, token, data=data, content_type="text/plain"
        )
    assert status == 400
    assert message in assert_graph_error(status, body, headers, code)


async def test_unknown_segment_and_unsupported_content_type(emulator: Emulator) -> None:
    async with graph_client(emulator) as http:
        token = await get_token(http, emulator)
        status, body, headers = await send(
            http, emulator, token, json_body={}, path=f"users/{MAILBOX}/sendMial"
        )
        assert status == 400
        assert assert_graph_error(status, body, headers, "BadRequest") == (
            "Resource not found for the segment 'sendMial'."
        )
        status, body, headers = await send(
            http, emulator, token, data=b"<x/>", content_type="application/xml"
        )
        assert status == 415
        assert_graph_error(status, body, headers, "UnsupportedMediaType")


async def test_path_segments_are_case_insensitive_and_mailbox_lowercased(
    emulator: Emulator,
) -> None:
    async with graph_client(emulator) as http:
        token = await get_token(http, emulator)
        status, _, _ = await send(
            http,
            emulator,
            token,
            json_body={"message": json_message()},
            path="Users/Scanner@Contoso.COM/microsoft.graph.sendmail",
        )
    assert status == 202
    assert emulator.delivered()[0].mailbox == "scanner@contoso.com"


async def test_raw_utf8_headers_and_lone_surrogates_are_recorded_readably(
    emulator: Emulator,
) -> None:
    raw = "To: Jürgen <jürgen@example.com>, plain@example.com\r\nSubject: Grüße\r\n\r\nx\r\n"
    async with graph_client(emulator) as http:
        token = await get_token(http, emulator)
        status, _, _ = await send(
            http, emulator, token, data=mime_body(raw.encode()), content_type="text/plain"
        )
        assert status == 202
        status, _, _ = await send(
            http,
            emulator,
            token,
            data=b'{"message": {"subject": "broken \\ud800 pair", "toRecipients": '
            b'[{"emailAddress": {"address": "a@example.com"}}]}}',
        )
        assert status == 202

    first, second = emulator.delivered()
    assert first.recipients["to"] == ["jürgen@example.com", "plain@example.com"]
    assert first.subject == "Grüße"
    assert second.subject == "broken \ufffd pair"
    for message in (first, second):
        meta = json.loads((emulator.outbox_dir / f"{message.file_stem}.json").read_text())
        assert meta["subject"] == message.subject
