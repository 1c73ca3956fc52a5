"""Our hand-written Graph message schema, cross-checked against the reference schema derived
from Microsoft's metadata (read in place from ../shared when it exists), and the .eml rendering."""

from __future__ import annotations

import base64
import copy
import json
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.emulator.messages import (
    DeliveredAttachment,
    mime_attachments,
    mime_recipients,
    parse_mime,
    render_json_message,
)
from gateway.emulator.payloads import parse_send_mail
from gateway.emulator.schema import SchemaError
from tests.emulator.jsonschema_lite import Validator

REFERENCE = Path(__file__).resolve().parents[3] / "shared/reference/graph-message-schema.json"

FILE = "#microsoft.graph.fileAttachment"


def full_message() -> dict[str, Any]:
    """A message using most of what a gateway sends, with canonical (lowercase) enums."""
    return {
        "subject": "Invoice 4711",
        "body": {"contentType": "html", "content": "<p>See attached <img src='cid:logo'></p>"},
        "toRecipients": [{"emailAddress": {"address": "alice@example.com", "name": "Alice"}}],
        "ccRecipients": [{"emailAddress": {"address": "bob@example.com"}}],
        "bccRecipients": [{"emailAddress": {"address": "carol@example.com"}}],
        "replyTo": [{"emailAddress": {"address": "billing@contoso.com"}}],
        "from": {"emailAddress": {"address": "erp@contoso.com", "name": "ERP"}},
        "importance": "high",
        "internetMessageId": "<4711@erp.contoso.com>",
        "isReadReceiptRequested": False,
        "isDeliveryReceiptRequested": True,
        "categories": ["invoices"],
        "internetMessageHeaders": [{"name": "x-erp-batch", "value": "17"}],
        "singleValueExtendedProperties": [{"id": "String 0x1042", "value": "<parent@contoso>"}],
        "flag": {
            "flagStatus": "flagged",
            "dueDateTime": {"dateTime": "2030-01-01T00:00:00", "timeZone": "UTC"},
        },
        "attachments": [
            {
                "@odata.type": FILE,
                "name": "logo.png",
                "contentType": "image/png",
                "contentBytes": base64.b64encode(b"\x89PNG...").decode(),
                "isInline": True,
                "contentId": "logo",
                "size": 7,
            },
            {
                "@odata.type": "#microsoft.graph.itemAttachment",
                "name": "original.eml",
                "item": {
                    "@odata.type": "#microsoft.graph.message",
                    "subject": "original",
                    "body": {"contentType": "text", "content": "the original"},
                },
            },
        ],
    }


def rejected(message: dict[str, Any]) -> bool:
    try:
        parse_send_mail({"message": message})
    except SchemaError:
        return True
    return False


def variant(**changes: Any) -> dict[str, Any]:
    message = full_message()
    for key, value in changes.items():
        if value is None:
            del message[key]
        else:
            message[key] = value
    return message


INVALID = {
    "typo": variant(toRecipient=[]),
    "number-subject": variant(subject=42),
    "object-importance": variant(importance={"level": "high"}),
    "bad-enum": variant(importance="urgent"),
    "recipients-not-array": variant(toRecipients={"emailAddress": {"address": "a@b.co"}}),
    "attachment-untyped": variant(attachments=[{"name": "a", "contentBytes": "YQ=="}]),
    "attachment-bad-bytes": variant(
        attachments=[{"@odata.type": FILE, "name": "a", "contentBytes": "a b!"}]
    ),
    "size-not-integer": variant(
        attachments=[{"@odata.type": FILE, "name": "a", "contentBytes": "YQ==", "size": "7"}]
    ),
    "isInline-null": variant(
        attachments=[{"@odata.type": FILE, "name": "a", "contentBytes": "YQ==", "isInline": None}]
    ),
    "header-not-object": variant(internetMessageHeaders=["x-a: b"]),
}
# Rejected by Graph (its nested types are closed) but not by the reference schema, whose strict
# variant closes only the message object itself.
STRICTER_THAN_REFERENCE = {
    "attachment-unknown-property": variant(
        attachments=[{"@odata.type": FILE, "name": "a", "contentBytes": "YQ==", "data": 1}]
    ),
    "email-address-extra": variant(
        toRecipients=[{"emailAddress": {"address": "a@b.co", "display": "A"}}]
    ),
}


def test_full_message_is_accepted() -> None:
    assert not rejected(full_message())


@pytest.mark.parametrize("name", sorted(INVALID | STRICTER_THAN_REFERENCE))
def test_invalid_messages_are_rejected(name: str) -> None:
    assert rejected((INVALID | STRICTER_THAN_REFERENCE)[name])


def test_graph_leniencies_we_mirror() -> None:
    # Docs examples use "Text"/"HTML" and saveToSentItems "false"; Graph accepts them.
    message = variant(body={"contentType": "HTML", "content": "<b>x</b>"}, importance="Low")
    parsed = parse_send_mail({"message": message, "saveToSentItems": "false"})
    assert parsed.save_to_sent_items is False
    assert parsed.message["body"]["contentType"] == "HTML"  # recorded as it came


@pytest.fixture(scope="module")
def reference() -> Validator:
    if not REFERENCE.exists():
        pytest.skip(f"reference schema not present at {REFERENCE}")
    return Validator(json.loads(REFERENCE.read_text()), "#/$defs/sendMailRequestStrict")


def test_what_we_accept_the_reference_schema_accepts(reference: Validator) -> None:
    for document in (
        {"message": full_message(), "saveToSentItems": False},
        {"Message": full_message()},
        {"message": {"toRecipients": [{"emailAddress": {"address": "a@example.com"}}]}},
    ):
        parse_send_mail(copy.deepcopy(document))
        assert reference.is_valid(document), document


@pytest.mark.parametrize("name", sorted(INVALID))
def test_what_we_reject_the_reference_schema_rejects(reference: Validator, name: str) -> None:
    assert not reference.is_valid({"message": INVALID[name]})


# -- rendering JSON messages as .eml --------------------------------------------------------

addresses = st.builds(
    "{}@{}.{}".format,
    st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,15}", fullmatch=True),
    st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True),
    st.sampled_from(["com", "org", "example", "co.uk"]),
)
names = st.text(alphabet=st.characters(exclude_categories=["Cs", "Cc"]), max_size=30)
recipients = st.lists(
    st.builds(lambda a, n: {"emailAddress": {"address": a, "name": n}}, addresses, names),
    max_size=4,
)


@settings(max_examples=60, deadline=None)
@given(to=recipients, cc=recipients, bcc=recipients, subject=st.text(max_size=80))
def test_rendered_eml_keeps_every_recipient(
    to: list[dict[str, Any]], cc: list[dict[str, Any]], bcc: list[dict[str, Any]], subject: str
) -> None:
    message = {
        "subject": subject,
        "toRecipients": to,
        "ccRecipients": cc,
        "bccRecipients": bcc,
        "body": {"contentType": "text", "content": "hello"},
    }

    eml = render_json_message(message, mailbox="scanner@contoso.com", attachments=None)

    found = mime_recipients(parse_mime(eml))
    for key, given_list in (("to", to), ("cc", cc), ("bcc", bcc)):
        assert found[key] == [r["emailAddress"]["address"] for r in given_list]


def test_rendered_eml_has_inline_parts_and_nested_messages() -> None:
    eml = render_json_message(full_message(), mailbox="erp@contoso.com", attachments=None)

    parsed = message_from_bytes(eml, policy=policy.default)
    assert parsed["From"] == "ERP <erp@contoso.com>"
    assert parsed["Message-ID"] == "<4711@erp.contoso.com>"
    assert parsed["x-erp-batch"] == "17"
    parts = {p.get_filename(): p for p in parsed.iter_attachments()}
    assert parts["logo.png"]["Content-ID"] == "<logo>"
    assert parts["logo.png"].get_content_disposition() == "inline"
    nested = parts["original.eml"]
    assert nested.get_content_type() == "message/rfc822"
    assert nested.get_content()["Subject"] == "original"


attachments = st.lists(
    st.builds(
        DeliveredAttachment,
        name=st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40),
        content_type=st.one_of(
            st.sampled_from(
                [
                    "application/pdf",
                    "image/PNG",
                    "text/plain; charset=utf-8",
                    "message/rfc822",
                    "message/delivery-status",
                    "multipart/mixed",
                    "",
                    "text",
                ]
            ),
            st.text(max_size=20),
        ),
        content=st.binary(max_size=200),
        is_inline=st.booleans(),
        content_id=st.one_of(
            st.none(),
            st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=20),
        ),
    ),
    max_size=3,
)


@settings(max_examples=60, deadline=None)
@given(attached=attachments)
def test_any_attachment_renders_into_a_parseable_eml(attached: list[DeliveredAttachment]) -> None:
    eml = render_json_message(
        {"subject": "s", "toRecipients": [{"emailAddress": {"address": "a@example.com"}}]},
        mailbox="scanner@contoso.com",
        attachments=attached,
    )

    parsed = parse_mime(eml)
    assert mime_recipients(parsed)["to"] == ["a@example.com"]
    if attached:
        [_body, *parts] = parsed.iter_parts()
        assert [p.get_content_disposition() for p in parts] == [
            "inline" if a.is_inline else "attachment" for a in attached
        ]
        for part, attachment in zip(parts, attached, strict=True):
            if part.get_content_type() != "message/rfc822":
                assert part.get_payload(decode=True) == attachment.content


def test_mime_attachments_are_listed_without_looking_into_attached_messages() -> None:
    raw = (
        b"From: a@contoso.com\r\nTo: c@example.com\r\n"
        b"Content-Type: multipart/mixed; boundary=X\r\n\r\n"
        b"--X\r\nContent-Type: multipart/related; boundary=Y\r\n\r\n"
        b"--Y\r\nContent-Type: text/html\r\n\r\n<img src=cid:i1>\r\n"
        b"--Y\r\nContent-Type: image/png\r\nContent-ID: <i1>\r\nContent-Disposition: inline\r\n"
        b"\r\nPNG\r\n--Y--\r\n"
        b"--X\r\nContent-Type: message/rfc822\r\n\r\n"
        b"Subject: inner\r\nContent-Type: multipart/mixed; boundary=Z\r\n\r\n"
        b"--Z\r\nContent-Type: application/pdf\r\n"
        b"Content-Disposition: attachment; filename=inner.pdf\r\n\r\nPDF\r\n--Z--\r\n"
        b"--X\r\nContent-Type: application/pdf\r\n"
        b"Content-Disposition: attachment; filename=outer.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nUERG\r\n--X--\r\n"
    )

    found = mime_attachments(parse_mime(raw))

    assert [(a.name, a.content_type, a.is_inline, a.content_id) for a in found] == [
        ("", "image/png", True, "i1"),
        ("", "message/rfc822", False, None),
        ("outer.pdf", "application/pdf", False, None),
    ]
    assert found[2].content == b"PDF"
    assert b"Subject: inner" in found[1].content
