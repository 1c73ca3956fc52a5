"""A raw MIME message as a Graph `message` resource (JSON mode and the large-message path).

What survives the conversion, and how:
- recipients: the SMTP envelope decides. Each envelope recipient appears exactly once: in To or
  Cc when the header lists it (with its display name), else in Bcc; header addresses outside
  the envelope are left out.
- subject, display names and filenames are decoded (RFC 2047/2231, any charset Python knows;
  undeclared 8-bit as UTF-8, else windows-1252).
- body: as a mail reader shows it (`gateway.mime.body`): the HTML alternative when there is
  one, else the text, then the later inline text parts of a multipart/mixed, each kept apart;
  images the HTML shows by `cid:` become inline attachments (`isInline`, `contentId`).
- every other part is an attachment with its name and type: zero-byte files, duplicate names,
  attached messages (`.eml`), calendar invitations (`.ics`), delivery reports (`.txt`).
- Importance/X-Priority/Priority, read and delivery receipt requests, Message-ID, threading
  headers (as the MAPI properties Outlook uses), up to five `x-` headers.
Pure: bytes in, JSON-ready dicts out.
"""

from __future__ import annotations

import base64
import mimetypes
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.headerregistry import AddressHeader
from email.message import EmailMessage
from typing import Any

from gateway.mime.body import disposition, filename, find_body, raw_header
from gateway.mime.buffer import Buffer
from gateway.mime.parts import Part, decoded, decoded_size, parse_headers, parse_tree
from gateway.mime.text import clean, decode_words

MAX_CUSTOM_HEADERS = 5  # Graph refuses more (InvalidInternetMessageHeaderCollection)
# MAPI properties for what internetMessageHeaders cannot carry (only x- names are allowed).
IN_REPLY_TO = "String 0x1042"  # PidTagInReplyToId
REFERENCES = "String 0x1039"  # PidTagInternetReferences
LIST_UNSUBSCRIBE = "String 0x1045"  # PidTagListUnsubscribe
# x- headers that describe transport or are mapped to properties: not worth a header slot.
_SKIPPED_X = re.compile(
    r"^x-(ms-|microsoft-|mimeole$|msmail-priority$|priority$|originating-|spam|virus|"
    r"forefront-|exchange-|received|original-to$|envelope-|rcpt-to$|auth|barracuda|proofpoint)",
    re.IGNORECASE,
)
_UNFOLD = re.compile(r"\r?\n(?=[ \t])")  # RFC 5322 unfolding removes only the line break
# Never sent to Graph in an address or a name: C0 and C1 controls, DEL, line separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_MESSAGE_ID = re.compile(r"^<[^<>\s@]+@[^<>\s@]+>$")
# Report parts are plain text: named so that a reader opens them as text (RFC 3464, 8098, 5965).
_REPORT_NAMES = {
    "message/delivery-status": "delivery-status.txt",
    "message/global-delivery-status": "delivery-status.txt",
    "message/disposition-notification": "disposition-notification.txt",
    "message/global-disposition-notification": "disposition-notification.txt",
    "message/feedback-report": "feedback-report.txt",
    "text/rfc822-headers": "original-headers.txt",
    "message/global-headers": "original-headers.txt",
}
_SIGNED_TYPES = frozenset(
    {
        "multipart/signed",
        "multipart/encrypted",
        "application/pkcs7-mime",
        "application/x-pkcs7-mime",
    }
)


@dataclass(frozen=True, slots=True)
class Attachment:
    """A part that travels as a Graph fileAttachment."""

    part: Part
    name: str
    content_type: str
    size: int  # decoded bytes
    is_inline: bool = False
    content_id: str = ""

    def resource(self, data: Buffer) -> dict[str, Any]:
        """The fileAttachment JSON, contents included."""
        item = self.item()
        item["@odata.type"] = "#microsoft.graph.fileAttachment"
        item["contentBytes"] = base64.b64encode(decoded(data, self.part)).decode("ascii")
        return item

    def item(self) -> dict[str, Any]:
        """Name, type and inline facts (an upload session's `AttachmentItem` adds the rest)."""
        item: dict[str, Any] = {
            "name": self.name,
            "contentType": self.content_type,
            "isInline": self.is_inline,
        }
        if self.content_id:
            item["contentId"] = self.content_id
        return item

    @property
    def encoded_size(self) -> int:
        """Bytes this attachment adds to a JSON request."""
        return (self.size + 2) // 3 * 4 + len(self.name.encode()) * 2 + 200


@dataclass(frozen=True, slots=True)
class Conversion:
    """The Graph message without attachment contents, and the attachments to add."""

    message: dict[str, Any]
    attachments: tuple[Attachment, ...]
    dropped_headers: tuple[str, ...] = ()  # x- headers beyond what Graph takes
    header_recipients_left_out: tuple[str, ...] = ()

    def with_attachments(self, data: Buffer) -> dict[str, Any]:
        """The complete message resource, every attachment inline in the JSON."""
        message = dict(self.message)
        if self.attachments:
            message["attachments"] = [a.resource(data) for a in self.attachments]
        return message

    def without_custom_headers(self) -> Conversion:
        message = {k: v for k, v in self.message.items() if k != "internetMessageHeaders"}
        return Conversion(
            message, self.attachments, self.dropped_headers, self.header_recipients_left_out
        )


def is_signed(header_section: bytes) -> bool:
    """Whether the top-level Content-Type is S/MIME or PGP/MIME (signed or encrypted): such
    mail must go as MIME, byte for byte, or its signature breaks."""
    headers = parse_headers(header_section)
    return headers.get("Content-Type") is not None and headers.get_content_type() in _SIGNED_TYPES


def convert(
    data: Buffer, recipients: Sequence[str], *, from_mailbox: str = "", reply_to_sender: bool = True
) -> Conversion:
    """The Graph message for raw message `data` sent to the envelope `recipients`.

    `from_mailbox` sends it as that mailbox (the header From's display name kept; the original
    From becomes Reply-To when `reply_to_sender` and there is none).
    """
    tree = parse_tree(data)
    headers = tree.headers
    message: dict[str, Any] = {}
    subject = _text_header(headers, "Subject")
    if subject is not None:
        message["subject"] = subject
    left_out = _recipients(message, headers, recipients)
    _senders(message, headers, from_mailbox, reply_to_sender)
    body, attachments = _content(data, tree)
    message["body"] = body
    _properties(message, headers)
    kept, dropped = _custom_headers(headers)
    if kept:
        message["internetMessageHeaders"] = kept
    return Conversion(message, tuple(attachments), tuple(dropped), tuple(left_out))


# --- headers --------------------------------------------------------------------------------


def _text_header(headers: EmailMessage, name: str) -> str | None:
    """A header value unfolded and decoded (encoded words, raw 8-bit), never raising."""
    value = raw_header(headers, name)
    if value is None:
        return None
    return decode_words(clean(_UNFOLD.sub("", value)).strip())


def _addresses(headers: EmailMessage, name: str) -> list[tuple[str, str]]:
    """(display name, address) for each mailbox in every `name` header (groups flattened)."""
    found: list[tuple[str, str]] = []
    try:
        values = headers.get_all(name, [])
    except Exception:  # noqa: BLE001 - the library raises anything on some inputs; such a value is skipped
        return found
    for value in values:
        if not isinstance(value, AddressHeader):
            continue
        try:
            addresses = value.addresses
        except Exception:  # noqa: BLE001 - an unreadable header adds no address
            addresses = ()
        for address in addresses:
            spec = clean(address.addr_spec)
            if address.username and address.domain and not _CONTROL.search(spec):
                found.append((_CONTROL.sub("", clean(address.display_name)), spec))
    return found


def _key(address: str) -> str:
    # Exchange resolves addresses without regard to case, local part included.
    return address.lower()


def _recipient(name: str, address: str) -> dict[str, Any]:
    entry: dict[str, str] = {"address": address}
    if name:
        entry["name"] = name
    return {"emailAddress": entry}


def _recipients(
    message: dict[str, Any], headers: EmailMessage, recipients: Sequence[str]
) -> list[str]:
    envelope: dict[str, str] = {}
    for recipient in recipients:
        envelope.setdefault(_key(recipient), recipient)
    placed: set[str] = set()
    left_out: list[str] = []
    for header, field_name in (("To", "toRecipients"), ("Cc", "ccRecipients")):
        listed = []
        for name, address in _addresses(headers, header):
            key = _key(address)
            if key not in envelope:
                left_out.append(address)
            elif key not in placed:
                placed.add(key)
                listed.append(_recipient(name, envelope[key]))
        if listed:
            message[field_name] = listed
    hidden = [_recipient("", address) for key, address in envelope.items() if key not in placed]
    if hidden:
        message["bccRecipients"] = hidden
    return left_out


def _senders(
    message: dict[str, Any], headers: EmailMessage, from_mailbox: str, reply_to_sender: bool
) -> None:
    senders = _addresses(headers, "From")
    original = senders[0] if senders else None
    reply_to = [_recipient(n, a) for n, a in _addresses(headers, "Reply-To")]
    if from_mailbox:
        message["from"] = _recipient(original[0] if original else "", from_mailbox)
        if not reply_to and reply_to_sender and original:
            reply_to = [_recipient(*original)]
    elif original:
        message["from"] = _recipient(*original)
        sender = _addresses(headers, "Sender")
        if sender and _key(sender[0][1]) != _key(original[1]):
            message["sender"] = _recipient(*sender[0])
    if reply_to:
        message["replyTo"] = reply_to


def _importance(headers: EmailMessage) -> str | None:
    value = (_text_header(headers, "Importance") or "").lower()
    if value in ("high", "normal", "low"):
        return value
    priority = (_text_header(headers, "X-Priority") or "").strip()[:1]
    if priority in ("1", "2"):
        return "high"
    if priority in ("4", "5"):
        return "low"
    if priority == "3":
        return "normal"
    value = (
        _text_header(headers, "Priority") or _text_header(headers, "X-MSMail-Priority") or ""
    ).lower()
    return {
        "urgent": "high",
        "high": "high",
        "non-urgent": "low",
        "low": "low",
        "normal": "normal",
    }.get(value)


def _properties(message: dict[str, Any], headers: EmailMessage) -> None:
    importance = _importance(headers)
    if importance:
        message["importance"] = importance
    if raw_header(headers, "Disposition-Notification-To") is not None:
        message["isReadReceiptRequested"] = True
    if raw_header(headers, "Return-Receipt-To") is not None:
        message["isDeliveryReceiptRequested"] = True
    message_id = _text_header(headers, "Message-ID")
    if message_id and _MESSAGE_ID.match(message_id):
        message["internetMessageId"] = message_id
    extended = []
    for name, property_id in (
        ("In-Reply-To", IN_REPLY_TO),
        ("References", REFERENCES),
        ("List-Unsubscribe", LIST_UNSUBSCRIBE),
    ):
        value = _text_header(headers, name)
        if value:
            extended.append({"id": property_id, "value": value})
    if extended:
        message["singleValueExtendedProperties"] = extended


def _custom_headers(headers: EmailMessage) -> tuple[list[dict[str, str]], list[str]]:
    kept: list[dict[str, str]] = []
    dropped: list[str] = []
    seen: set[str] = set()
    for name in headers.keys():  # noqa: SIM118 - the names, in order, repeats included
        lowered = name.lower()
        if not lowered.startswith("x-") or _SKIPPED_X.match(lowered) or lowered in seen:
            continue
        seen.add(lowered)
        if not name.isascii() or len(kept) >= MAX_CUSTOM_HEADERS:
            dropped.append(name)
            continue
        value = _text_header(headers, name) or ""
        kept.append({"name": name, "value": value[:995]})
    return kept, dropped


# --- body and attachments -------------------------------------------------------------------


def _content(data: Buffer, tree: Part) -> tuple[dict[str, str], list[Attachment]]:
    body = find_body(tree, data)
    attachments: list[Attachment] = []
    html = body.content.lower() if body.content_type == "html" else ""
    for leaf in tree.leaves():
        if id(leaf) not in body.shown:
            attachments.append(_attachment(data, leaf, len(attachments) + 1, html))
    return body.resource(), attachments


def _content_id(part: Part) -> str:
    value = raw_header(part.headers, "Content-ID")
    if value is None:
        return ""
    return _UNFOLD.sub("", value).strip().strip("<>").strip()


def _attachment(data: Buffer, part: Part, number: int, html: str) -> Attachment:
    name = filename(part)
    kind = part.content_type
    if not name:
        if kind == "message/rfc822":
            inner = parse_tree(data, part.body_start, part.body_end).headers
            subject = _text_header(inner, "Subject") or "attached message"
            name = _safe_name(subject) + ".eml"
        elif kind == "text/calendar":
            name = "invite.ics"
        elif kind in _REPORT_NAMES:
            name = _REPORT_NAMES[kind]
        else:
            extension = mimetypes.guess_extension(kind)
            extension = extension or (".txt" if kind.startswith("text/") else ".bin")
            name = f"attachment-{number}{extension}"
    content_id = _content_id(part)
    # Inline only when the HTML body shows it: Outlook hides inline parts it does not show.
    inline = (
        bool(content_id)
        and disposition(part) != "attachment"
        and re.search(f"cid:{re.escape(content_id.lower())}(?![^\"'\\s)>;])", html) is not None
    )
    return Attachment(part, name, kind, decoded_size(data, part), inline, content_id)


def _safe_name(text: str) -> str:
    name = re.sub(r'[\\/:*?"<>|\x00-\x1f]+', "_", text).strip(" .")
    return name[:120] or "attached message"
