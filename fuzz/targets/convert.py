"""Fuzz target `convert`: a raw message through everything that turns it into what Graph gets.

JSON mode (`convert`, `with_attachments`), the MIME tree and part decoding (`parse_tree`,
`iter_decoded`), the large-message path's builders (`_draft`, `_chunks` in delivery/submit.py),
MIME mode's header edits (`with_envelope_bcc`, `rewrite_from`) and bounces (`build_dsn`). None
of them may raise on any input. Beyond that, what their docstrings promise is checked: each
envelope recipient appears exactly once in the JSON, the JSON serialises as the Graph client
sends it, decoding in pieces gives the same bytes as decoding at once, and after
`with_envelope_bcc` the standard library reads no To, Cc or Bcc address outside the envelope.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from email import policy
from email.parser import BytesHeaderParser
from typing import Any

from gateway.graph.large import CHUNK, UPLOAD_MINIMUM
from gateway.graph.large import chunks as _chunks
from gateway.graph.large import draft_message as _draft
from gateway.mime.convert import Conversion, convert
from gateway.mime.dsn import Failure, build_dsn
from gateway.mime.parts import decoded, decoded_size, iter_decoded, parse_tree
from gateway.mime.recipients import with_envelope_bcc
from gateway.mime.sender import rewrite_from

MAX_LEN = 64 * 1024
RECIPIENTS = ("alice@contoso.com", "Bob@Fabrikam.com", "carol@example.org")
MAILBOX = "scanner@contoso.com"
_PIECE = 7  # an odd piece size, so pieces cut base64 quanta and QP escapes everywhere
_PARSER = BytesHeaderParser(policy=policy.default)
_FAILURE = Failure(RECIPIENTS, "5.0.0", "404 MailboxNotEnabledForRESTAPI", "no such mailbox")


def one_input(data: bytes) -> None:
    """Convert and prepare `data` every way the delivery side does; raise on a broken promise."""
    conversion = convert(data, RECIPIENTS)
    _check_recipients(conversion.message)
    _check_serialisable(conversion.with_attachments(data))
    sent_as = convert(data, RECIPIENTS, from_mailbox=MAILBOX)
    _check_recipients(sent_as.message)
    if sent_as.message["from"]["emailAddress"]["address"] != MAILBOX:
        raise AssertionError(f"from_mailbox not used: {sent_as.message['from']!r}")
    _check_parts(data)
    _check_large_path(data, conversion)
    _check_envelope_bcc(data)
    rewrite_from(data, MAILBOX)
    rewrite_from(data, MAILBOX, reply_to_sender=False)
    build_dsn(
        original=data,
        original_sender=MAILBOX,
        queue_id="018F3A2B4C5D6E0A1B2",
        failure=_FAILURE,
        postmaster="postmaster@contoso.com",
        reporting_host="relay.contoso.com",
        arrival=1_700_000_000.0,
        now=1_700_000_060.0,
    )


def _check_recipients(message: dict[str, Any]) -> None:
    """convert's docstring: each envelope recipient exactly once, in To, Cc or else Bcc."""
    listed = [
        entry["emailAddress"]["address"]
        for field in ("toRecipients", "ccRecipients", "bccRecipients")
        for entry in message.get(field, [])
    ]
    if sorted(listed) != sorted(RECIPIENTS):
        raise AssertionError(f"envelope {RECIPIENTS} became recipients {listed}")


def _check_serialisable(message: dict[str, Any]) -> None:
    # As gateway/graph/client.py sends a JSON body.
    json.dumps(message, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _check_parts(data: bytes) -> None:
    tree = parse_tree(data)
    for leaf in tree.leaves():
        if not 0 <= leaf.start <= leaf.body_start <= leaf.body_end <= len(data):
            raise AssertionError(
                f"part spans {leaf.start}..{leaf.body_start}..{leaf.body_end} "
                f"outside a {len(data)}-byte message"
            )
        whole = decoded(data, leaf)
        pieces = list(iter_decoded(data, leaf, _PIECE))
        if b"".join(pieces) != whole or any(len(piece) != _PIECE for piece in pieces[:-1]):
            raise AssertionError(f"iter_decoded pieces differ from decoded for {leaf!r}")
        if decoded_size(data, leaf) != len(whole):
            raise AssertionError(f"decoded_size {decoded_size(data, leaf)} != {len(whole)}")


def _check_large_path(data: bytes, conversion: Conversion) -> None:
    small = [a for a in conversion.attachments if a.size < UPLOAD_MINIMUM]
    message, later = _draft(conversion, data, small)
    _check_serialisable(message)
    if len(message.get("attachments", [])) + len(later) != len(small):
        raise AssertionError("_draft lost or duplicated an attachment")
    for attachment in conversion.attachments:
        whole = decoded(data, attachment.part)
        if len(whole) != attachment.size:
            raise AssertionError(f"attachment size {attachment.size} != {len(whole)} decoded")
        for offset in (0, attachment.size // 2):
            pieces = list(_chunks(data, attachment, offset))
            if b"".join(piece for _start, piece in pieces) != whole[offset:]:
                raise AssertionError(f"_chunks from {offset} differ from the decoded bytes")
            if (pieces and pieces[0][0] != offset) or any(len(p) > CHUNK for _s, p in pieces):
                raise AssertionError(f"_chunks from {offset}: bad starts or sizes")


def _check_envelope_bcc(data: bytes) -> None:
    """Graph's MIME sendMail mails every To/Cc/Bcc address: none may be outside the envelope."""
    prepared = with_envelope_bcc(data, list(RECIPIENTS))
    if not set(prepared.bcc) <= set(RECIPIENTS):
        raise AssertionError(f"Bcc {prepared.bcc} outside the envelope")
    envelope = {recipient.lower() for recipient in RECIPIENTS}
    try:
        headers = _PARSER.parsebytes(prepared.message)
        seen = [
            (name, f"{address.username}@{address.domain}")
            for name in ("to", "cc", "bcc")
            for value in headers.get_all(name, [])
            for address in getattr(value, "addresses", ())
            if address.domain
        ]
    except Exception:  # noqa: BLE001 - only addresses the library does read are compared
        return
    outside = [(name, address) for name, address in seen if address.lower() not in envelope]
    if outside:
        raise AssertionError(
            f"with_envelope_bcc left {outside} for Graph to mail (envelope {RECIPIENTS}); "
            f"message starts {prepared.message[:300]!r}"
        )


# --- seeds ----------------------------------------------------------------------------------

_HAND_WRITTEN = {
    "empty": b"",
    "headers-only": b"From: a@contoso.com\r\nTo: alice@contoso.com\r\nSubject: hi\r\n",
    "no-header-section": b"just a body line\r\n",
    "bare-lf-multipart": (
        b"From: scanner@contoso.com\nTo: alice@contoso.com, x@evil.example\n"
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nhi\n"
        b"--b\nContent-Type: application/pdf; name=scan.pdf\nContent-Transfer-Encoding: base64"
        b"\n\nJVBERi0xLjcKJeLjz9MK\n--b--\n"
    ),
    "alternative-related-cid": (
        b'From: "Scanner" <scanner@contoso.com>\r\nTo: Bob@fabrikam.com\r\n'
        b"Cc: carol@example.org\r\nBcc: hidden@example.net\r\n"
        b"Subject: =?utf-8?q?Caf=C3=A9?=\r\nX-Priority: 1\r\n"
        b'Content-Type: multipart/alternative; boundary="outer"\r\n\r\n'
        b"--outer\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9=\r\n!\r\n"
        b"--outer\r\nContent-Type: multipart/related; boundary=inner\r\n\r\n"
        b'--inner\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<img src="cid:logo@x">\r\n'
        b"--inner\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--inner--\r\n--outer--\r\n"
    ),
    "attached-message-digest": (
        b"To: alice@contoso.com\r\nContent-Type: multipart/digest; boundary=d\r\n\r\n"
        b"--d\r\n\r\nSubject: inner\r\n\r\nbody\r\n--d\r\n"
        b"Content-Type: text/calendar; method=REQUEST\r\n\r\nBEGIN:VCALENDAR\r\n--d--\r\n"
    ),
    "group-and-comments": (
        b"From: (c) scanner@contoso.com (d)\r\nTo: team: alice@contoso.com, "
        b'"Bob, B" <bob@fabrikam.com>;\r\nReply-To: <r@contoso.com>\r\n\r\nx\r\n'
    ),
    "rfc2231-filename": (
        b"To: alice@contoso.com\r\nContent-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Disposition: attachment;\r\n"
        b" filename*0*=utf-8''%E2%82%AC; filename*1=.txt\r\n\r\nabc\r\n--z--\r\n"
    ),
}


def seeds(messages: Mapping[str, bytes]) -> dict[str, bytes]:
    """Every test message (already shrunk by `fuzz.seeds`) and the hand-written cases."""
    return {**{f"eml-{name}": data for name, data in messages.items()}, **_HAND_WRITTEN}
