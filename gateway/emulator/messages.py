"""Turn what a client submitted into what the outbox shows: recipients, attachments and an .eml.

For MIME submissions the recipients come from the To, Cc and Bcc headers, parsed with
`email.policy.default` (folded headers, display names, groups and RFC 2047 words all handled);
Graph has no envelope. For JSON submissions the emulator renders an RFC 5322 message with the
`email` package so every delivery can be opened in a mail client.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.policy
import re
from collections.abc import Iterable, Mapping, Sequence
from email.errors import MessageError
from email.message import EmailMessage, Message, MIMEPart
from email.parser import BytesParser
from email.utils import format_datetime, formataddr, make_msgid
from typing import Any, NamedTuple

from gateway.emulator.schema import decode_binary

_SMTP_POLICY = email.policy.default.clone(linesep="\r\n")
_MEDIA_TYPE = re.compile(r"^([a-z0-9][a-z0-9!#$&^_.+-]*)/([a-z0-9][a-z0-9!#$&^_.+-]*)$")
_FILE_ATTACHMENT = "#microsoft.graph.fileAttachment"
_ITEM_ATTACHMENT = "#microsoft.graph.itemAttachment"


class DeliveredAttachment(NamedTuple):
    """One attachment of a delivered message."""

    name: str
    content_type: str
    content: bytes
    is_inline: bool
    content_id: str | None


def parse_mime(data: bytes) -> EmailMessage:
    message = BytesParser(policy=email.policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)  # guaranteed by policy.default
    return message


def mime_recipients(message: EmailMessage) -> dict[str, list[str]]:
    """Addresses in the To, Cc and Bcc headers (all occurrences, group members included)."""
    result: dict[str, list[str]] = {}
    for key in ("to", "cc", "bcc"):
        addresses: list[str] = []
        for header in message.get_all(key) or []:
            try:
                found = header.addresses
            except (AttributeError, ValueError, IndexError, MessageError):  # unparsable: none
                continue
            addresses.extend(clean_text(a.addr_spec) for a in found if a.addr_spec)
        result[key] = addresses
    return result


def clean_text(text: str) -> str:
    """Header text as proper Unicode: raw UTF-8 bytes the parser escaped are decoded."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a lone surrogate that did not come from the parser
        return text.encode("utf-8", "replace").decode("utf-8")


def mime_subject(message: EmailMessage) -> str | None:
    try:
        subject = message.get("Subject")
    except (ValueError, IndexError, MessageError):
        return None
    return clean_text(str(subject)) if subject is not None else None


def mime_attachments(message: EmailMessage) -> list[DeliveredAttachment]:
    """The attachment parts of a MIME message: parts with a filename, non-text parts with a
    Content-ID (inline images), and attached messages (not looked into)."""
    found = []
    for part in _leaves(message):
        name = part.get_filename()
        content_id = part.get("Content-ID")
        nested = part.get_content_type() == "message/rfc822"
        if (
            name is None
            and not nested
            and (content_id is None or part.get_content_maintype() == "text")
        ):
            continue
        found.append(
            DeliveredAttachment(
                name=clean_text(name or ""),
                content_type=part.get_content_type(),
                content=_part_bytes(part),
                is_inline=part.get_content_disposition() == "inline",
                content_id=str(content_id).strip("<>") if content_id else None,
            )
        )
    return found


def _leaves(part: MIMEPart) -> Iterable[MIMEPart]:
    if part.is_multipart() and part.get_content_type() != "message/rfc822":
        for child in part.iter_parts():
            yield from _leaves(child)
    else:
        yield part


def _part_bytes(part: MIMEPart) -> bytes:
    try:
        if part.get_content_type() == "message/rfc822":
            nested = part.get_payload(0)
            return nested.as_bytes() if isinstance(nested, Message) else b""
        payload = part.get_payload(decode=True)
    except (ValueError, LookupError, TypeError, IndexError, MessageError):
        return b""
    return payload if isinstance(payload, bytes) else b""


def json_attachments(attachments: Iterable[Mapping[str, Any]]) -> list[DeliveredAttachment]:
    """fileAttachments as delivered attachments; an itemAttachment becomes message/rfc822."""
    result = []
    for attachment in attachments:
        kind = attachment.get("@odata.type")
        if kind == _FILE_ATTACHMENT:
            content = decode_binary(attachment.get("contentBytes") or "")
            content_type = attachment.get("contentType") or "application/octet-stream"
        elif kind == _ITEM_ATTACHMENT:
            item = attachment.get("item") or {}
            content = bytes(render_json_message(item, mailbox=None, attachments=None))
            content_type = "message/rfc822"
        else:
            continue
        result.append(
            DeliveredAttachment(
                name=attachment.get("name") or "",
                content_type=content_type,
                content=content,
                is_inline=bool(attachment.get("isInline")),
                content_id=attachment.get("contentId"),
            )
        )
    return result


def render_json_message(
    message: Mapping[str, Any],
    *,
    mailbox: str | None,
    attachments: Sequence[DeliveredAttachment] | None,
) -> bytes:
    """An .eml rendering of a Graph JSON message (what Exchange would put on the wire)."""
    sender_json = message.get("from") or message.get("sender")
    sender = _address(sender_json) if isinstance(sender_json, Mapping) else None
    if sender is None and mailbox:
        sender = ("", mailbox)
    address_headers: list[tuple[str, list[tuple[str, str]]]] = []
    if sender is not None:
        address_headers.append(("From", [sender]))
    if message.get("sender") and message.get("from"):
        address_headers.append(("Sender", _addresses([message["sender"]])))
    for header, key in (
        ("To", "toRecipients"),
        ("Cc", "ccRecipients"),
        ("Bcc", "bccRecipients"),
        ("Reply-To", "replyTo"),
    ):
        found = _addresses(message.get(key) or [])
        if found:
            address_headers.append((header, found))

    eml = EmailMessage(policy=_SMTP_POLICY)
    eml["Subject"] = _one_line(message.get("subject") or "")
    eml["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    eml["Message-ID"] = message.get("internetMessageId") or make_msgid(domain="emulator.invalid")
    importance = str(message.get("importance") or "").lower()
    if importance in ("low", "high"):
        eml["Importance"] = importance.capitalize()
    if message.get("isReadReceiptRequested") in (True, "true") and sender is not None:
        eml["Disposition-Notification-To"] = sender[1]
    for header in message.get("internetMessageHeaders") or []:
        eml[_one_line(header.get("name") or "X-Unnamed")] = _one_line(header.get("value") or "")

    body = message.get("body") or {}
    subtype = "html" if str(body.get("contentType") or "").lower() == "html" else "plain"
    eml.set_content(body.get("content") or "", subtype=subtype)

    for attachment in attachments if attachments is not None else _inline_json(message):
        _attach(eml, attachment)
    head = "".join(_fold_addresses(name, found) for name, found in address_headers)
    return head.encode("utf-8") + eml.as_bytes(policy=_SMTP_POLICY)


def _addresses(recipients: Iterable[Any]) -> list[tuple[str, str]]:
    return [a for a in map(_address, recipients) if a is not None]


def _address(recipient: Any) -> tuple[str, str] | None:
    """(display name, address) of a Graph recipient."""
    if not isinstance(recipient, Mapping):
        return None
    email_address = recipient.get("emailAddress") or {}
    addr = _one_line(email_address.get("address") or "").strip()
    if not addr:
        return None
    return _one_line(email_address.get("name") or "").strip(), addr


def _fold_addresses(header: str, addresses: Sequence[tuple[str, str]]) -> str:
    """An address header folded between words, names as RFC 2047 words when not plain ASCII.

    Rendered by hand: the email package's folder can turn the comma after an encoded word into
    `=?utf-8?q?=2C?=` (and so merge two addresses into one) when it folds right there.
    """
    tokens: list[str] = []
    for index, (name, addr) in enumerate(addresses):
        if not name:
            words = [addr]
        elif name.isascii() and name.isprintable():
            words = [formataddr((name, addr))]
        else:
            words = [*_encoded_words(name), f"<{addr}>"]
        if index < len(addresses) - 1:
            words[-1] += ","
        tokens.extend(words)
    lines, line = [], f"{header}:"
    for token in tokens:
        if len(line) + 1 + len(token) > 76 and line != f"{header}:":
            lines.append(line)
            line = " " + token
        else:
            line += " " + token
    lines.append(line)
    return "\r\n".join(lines) + "\r\n"


def _encoded_words(text: str) -> list[str]:
    """RFC 2047 base64 words of at most 75 characters, never splitting a character."""
    words, chunk = [], ""
    for char in text:
        if len((chunk + char).encode("utf-8")) > 45:  # 45 bytes -> 60 base64 chars + 12
            words.append(chunk)
            chunk = ""
        chunk += char
    words.append(chunk)
    return [f"=?utf-8?b?{base64.b64encode(w.encode('utf-8')).decode('ascii')}?=" for w in words]


def _inline_json(message: Mapping[str, Any]) -> list[DeliveredAttachment]:
    return json_attachments(message.get("attachments") or [])


def _attach(eml: EmailMessage, attachment: DeliveredAttachment) -> None:
    maintype, subtype = _media_type(attachment.content_type)
    disposition = "inline" if attachment.is_inline else "attachment"
    cid = f"<{_one_line(attachment.content_id)}>" if attachment.content_id else None
    filename = _one_line(attachment.name) or None
    if (maintype, subtype) == ("message", "rfc822"):
        nested = parse_mime(attachment.content)
        eml.add_attachment(nested, disposition=disposition, filename=filename, cid=cid)
        return
    if maintype in ("multipart", "message"):  # containers the email package will not wrap bytes in
        maintype, subtype = "application", "octet-stream"
    eml.add_attachment(
        attachment.content,
        maintype=maintype,
        subtype=subtype,
        disposition=disposition,
        filename=filename,
        cid=cid,
    )


def _media_type(content_type: str) -> tuple[str, str]:
    match = _MEDIA_TYPE.match(content_type.split(";", 1)[0].strip().lower())
    if match is None:
        return "application", "octet-stream"
    return match.group(1), match.group(2)


def add_attachments(data: bytes, attachments: Sequence[DeliveredAttachment]) -> bytes:
    """A MIME message with extra attachments appended (a MIME draft plus POSTed attachments)."""
    if not attachments:
        return data
    eml = parse_mime(data)
    for attachment in attachments:
        _attach(eml, attachment)
    return eml.as_bytes(policy=_SMTP_POLICY)


def _one_line(text: str) -> str:
    return " ".join(str(text).splitlines())
