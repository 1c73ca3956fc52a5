"""A raw message as a Graph message: what the recipient of the converted mail would see
(recipients, subject, body, attachment names and bytes, flags), checked on realistic messages,
and on random ones against Microsoft's schema and the emulator's validator."""

from __future__ import annotations

import base64
import json
import string
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage, MIMEPart
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.emulator.payloads import parse_send_mail
from gateway.mime.convert import Conversion, convert, is_signed
from gateway.mime.parts import decoded
from tests.emulator.jsonschema_lite import Validator

REFERENCE = Path(__file__).resolve().parents[3] / "shared/reference/graph-message-schema.json"
SMTP = policy.SMTP


def crlf(text: str | bytes) -> bytes:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def message(headers: str | bytes, body: str | bytes = "hello\n") -> bytes:
    """A message with the given header lines (From and Subject added when missing)."""
    head = crlf(headers).rstrip(b"\r\n") + b"\r\n"
    if not head.lower().startswith(b"from:") and b"\nfrom:" not in head.lower():
        head = b"From: Device <device@contoso.com>\r\n" + head
    if b"\nsubject:" not in b"\n" + head.lower():
        head += b"Subject: test\r\n"
    return head + b"\r\n" + crlf(body)


def addresses(conversion: Conversion, field: str) -> list[str]:
    return [r["emailAddress"]["address"] for r in conversion.message.get(field, [])]


def names(conversion: Conversion, field: str) -> list[str | None]:
    return [r["emailAddress"].get("name") for r in conversion.message.get(field, [])]


def everyone(conversion: Conversion) -> list[str]:
    return [
        a
        for f in ("toRecipients", "ccRecipients", "bccRecipients")
        for a in addresses(conversion, f)
    ]


def attachment_bytes(conversion: Conversion, data: bytes) -> dict[str, bytes]:
    return {
        a.name: base64.b64decode(a.resource(data)["contentBytes"]) for a in conversion.attachments
    }


def ew(charset: str, text: str) -> str:
    """An RFC 2047 encoded word."""
    return f"=?{charset}?b?{base64.b64encode(text.encode(charset)).decode()}?="


# --- recipients: the envelope decides --------------------------------------------------------


def test_header_recipients_outside_the_envelope_are_left_out_and_reported() -> None:
    data = message(
        "To: Alice <alice@contoso.com>, Mallory <mallory@evil.example>\n"
        "Cc: bob@contoso.com, eve@evil.example\n"
    )

    conversion = convert(data, ["alice@contoso.com", "bob@contoso.com"])

    assert addresses(conversion, "toRecipients") == ["alice@contoso.com"]
    assert names(conversion, "toRecipients") == ["Alice"]
    assert addresses(conversion, "ccRecipients") == ["bob@contoso.com"]
    assert "bccRecipients" not in conversion.message
    assert conversion.header_recipients_left_out == ("mallory@evil.example", "eve@evil.example")


def test_envelope_only_recipients_are_bcc() -> None:
    data = message("To: alice@contoso.com\nBcc: stale@contoso.com\n")

    conversion = convert(data, ["alice@contoso.com", "hidden@fabrikam.com", "h2@fabrikam.com"])

    assert addresses(conversion, "toRecipients") == ["alice@contoso.com"]
    assert addresses(conversion, "bccRecipients") == ["hidden@fabrikam.com", "h2@fabrikam.com"]
    assert "stale@contoso.com" not in everyone(conversion)  # a Bcc header is not the envelope


def test_no_to_or_cc_header_sends_everyone_as_bcc() -> None:
    conversion = convert(message("Subject: to nobody\n"), ["a@contoso.com", "b@contoso.com"])

    assert "toRecipients" not in conversion.message
    assert addresses(conversion, "bccRecipients") == ["a@contoso.com", "b@contoso.com"]


def test_each_envelope_recipient_appears_exactly_once() -> None:
    data = message(
        "To: alice@contoso.com, Alice Again <alice@contoso.com>, bob@contoso.com\n"
        "Cc: bob@contoso.com, carol@contoso.com, alice@contoso.com\n"
    )
    envelope = [
        "alice@contoso.com",
        "bob@contoso.com",
        "carol@contoso.com",
        "dave@contoso.com",
        "dave@CONTOSO.com",
    ]

    conversion = convert(data, envelope)

    assert addresses(conversion, "toRecipients") == ["alice@contoso.com", "bob@contoso.com"]
    assert addresses(conversion, "ccRecipients") == ["carol@contoso.com"]
    assert addresses(conversion, "bccRecipients") == ["dave@contoso.com"]
    assert sorted(everyone(conversion)) == sorted(set(envelope[:4]))


def test_domains_compare_without_case_and_the_envelope_spelling_is_used() -> None:
    data = message("To: Alice <alice@CONTOSO.COM>\nCc: Bob <bob@Fabrikam.Com>\n")

    conversion = convert(data, ["alice@contoso.com", "bob@fabrikam.COM"])

    assert addresses(conversion, "toRecipients") == ["alice@contoso.com"]
    assert addresses(conversion, "ccRecipients") == ["bob@fabrikam.COM"]
    assert names(conversion, "ccRecipients") == ["Bob"]
    assert "bccRecipients" not in conversion.message
    assert conversion.header_recipients_left_out == ()


def test_groups_and_display_names_with_commas_and_at_signs() -> None:
    data = message(
        'To: "Doe, John" <john@contoso.com>, Team: "ops@contoso.com" <ops@contoso.com>,'
        ' "Smith, Jane (HR)" <jane@contoso.com>;, '
        "=?utf-8?q?M=C3=BCller=2C_Lena?= <lena@contoso.com>\n"
        "Cc: undisclosed-recipients:;\n"
    )

    conversion = convert(
        data, ["john@contoso.com", "ops@contoso.com", "jane@contoso.com", "lena@contoso.com"]
    )

    assert addresses(conversion, "toRecipients") == [
        "john@contoso.com",
        "ops@contoso.com",
        "jane@contoso.com",
        "lena@contoso.com",
    ]
    assert names(conversion, "toRecipients") == [
        "Doe, John",
        "ops@contoso.com",
        "Smith, Jane (HR)",
        "Müller, Lena",
    ]
    assert "ccRecipients" not in conversion.message
    assert "bccRecipients" not in conversion.message


def test_undeclared_8bit_display_names() -> None:
    data = message(b"From: Ren\xc3\xa9 <rene@contoso.com>\nTo: Jos\xe9 <jose@contoso.com>\n")

    conversion = convert(data, ["jose@contoso.com"])

    assert names(conversion, "toRecipients") == ["José"]
    assert conversion.message["from"]["emailAddress"] == {
        "address": "rene@contoso.com",
        "name": "René",
    }


# --- subject and body text -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        ("=?ISO-8859-1?Q?Caf=E9_cr=E8me?=", "Café crème"),
        (ew("koi8-r", "Привет, мир"), "Привет, мир"),
        (ew("shift_jis", "日本語の件名"), "日本語の件名"),
        (ew("big5", "中文主旨"), "中文主旨"),
        (ew("iso-2022-jp", "見積書"), "見積書"),
        ("=?utf-8?q?Pr=C3=BCfung?= =?utf-8?q?_bestanden?=", "Prüfung bestanden"),
        # One character's UTF-8 bytes split across two encoded words (and a folded line).
        ("=?utf-8?q?Preis_=E2=82?=\n =?utf-8?q?=AC_42?=", "Preis € 42"),
        ("Re: =?utf-8?b?w4RuZGVydW5n?= [ticket]", "Re: Änderung [ticket]"),
        ("=?utf-8?q?broken", "=?utf-8?q?broken"),
    ],
)
def test_encoded_subjects(encoded: str, expected: str) -> None:
    conversion = convert(message(f"To: a@contoso.com\nSubject: {encoded}\n"), ["a@contoso.com"])

    assert conversion.message["subject"] == expected


def test_undeclared_utf8_subject_and_body() -> None:
    data = message("To: a@contoso.com\nSubject: Grüße aus Köln\n", "Grüße, José\n")

    conversion = convert(data, ["a@contoso.com"])

    assert conversion.message["subject"] == "Grüße aus Köln"
    assert conversion.message["body"] == {"contentType": "text", "content": "Grüße, José\r\n"}


def test_undeclared_windows_1252_body() -> None:
    data = message("To: a@contoso.com\n", b"Caf\xe9 \x80 5\n")

    conversion = convert(data, ["a@contoso.com"])

    assert conversion.message["body"]["content"] == "Café € 5\r\n"


def test_8bit_body_declared_ascii_is_read_as_what_it_is() -> None:
    data = message("To: a@contoso.com\nContent-Type: text/plain; charset=us-ascii\n", "Grüße\n")

    conversion = convert(data, ["a@contoso.com"])

    assert conversion.message["body"]["content"] == "Grüße\r\n"


def test_undeclared_windows_1252_subject_is_read_as_windows_1252() -> None:
    """Regression: an undeclared 8-bit subject that is not UTF-8 must be read as windows-1252 (module
    docstring), but `headers.get("Subject")` under policy.default already turns the raw bytes
    into U+FFFD (email.utils._sanitize decodes surrogate escapes as UTF-8 with 'replace'), so
    `text.clean` never sees them: "Café € 5" arrives as "Caf� � 5"."""
    data = message(b"To: a@contoso.com\nSubject: Caf\xe9 \x80 5\n")

    conversion = convert(data, ["a@contoso.com"])

    assert conversion.message["subject"] == "Café € 5"


def test_undeclared_windows_1252_filename_is_read_as_windows_1252() -> None:
    """Regression: same cause as the subject: `get_filename()` reads the sanitised header, so the raw
    windows-1252 name `r\xe9sum\xe9.pdf` arrives as "r�sum�.pdf" (UTF-8 names are fine)."""
    data = crlf(
        b"To: a@contoso.com\nContent-Type: multipart/mixed; boundary=B\n\n--B\n\nbody\n"
        b"--B\nContent-Type: application/pdf\n"
        b'Content-Disposition: attachment; filename="r\xe9sum\xe9.pdf"\n\n%PDF\n'
        b"--B\nContent-Type: application/pdf\n"
        b'Content-Disposition: attachment; filename="\xe2\x82\xac.pdf"\n\n%PDF\n--B--\n'
    )

    conversion = convert(data, ["a@contoso.com"])

    assert [a.name for a in conversion.attachments] == ["résumé.pdf", "€.pdf"]


@pytest.mark.parametrize(
    "charset",
    [
        "x-no-such-charset",
        "",
        "unknown-8bit",
        '"utf-8"',
        "x-sjis",
        "ks_c_5601-1987",
        "gb2312",
        "utf-16",
        "*",
    ],
)
def test_unknown_or_odd_charset_names_never_raise(charset: str) -> None:
    body = "Grüße 日本\n".encode()
    data = message(
        f"To: a@contoso.com\nContent-Type: text/plain; charset={charset}\n"
        f"Subject: =?{charset or 'x'}?q?caf=C3=A9?=\n",
        body,
    )

    conversion = convert(data, ["a@contoso.com"])

    assert conversion.message["body"]["contentType"] == "text"
    assert isinstance(conversion.message["body"]["content"], str)
    if charset in ("x-no-such-charset", "", "unknown-8bit", '"utf-8"', "*"):
        assert conversion.message["body"]["content"] == "Grüße 日本\r\n"


def test_known_aliases_decode_the_body() -> None:
    data = message(
        "To: a@contoso.com\nContent-Type: text/plain; charset=x-sjis\n"
        "Content-Transfer-Encoding: 8bit\n",
        "日本語\n".encode("shift_jis"),
    )

    assert convert(data, ["a@contoso.com"]).message["body"]["content"] == "日本語\r\n"


@pytest.mark.parametrize("charset", ["base64", "hex", "rot13", "idna", "punycode"])
def test_codec_names_that_are_not_text_encodings_are_ignored(charset: str) -> None:
    """Regression: `_known` accepts any name `codecs.lookup` finds, including
    bytes-to-bytes codecs (base64, hex, rot13: `bytes.decode` raises LookupError) and codecs that
    raise UnicodeError rather than UnicodeDecodeError on bad input (idna; punycode raises again
    with errors='replace'). A body declared `charset=base64` makes `convert` raise, although
    the docstring promises it never does."""
    data = message(
        f"To: a@contoso.com\nContent-Type: text/plain; charset={charset}\n", b"Caf\xe9\n"
    )

    conversion = convert(data, ["a@contoso.com"])

    assert conversion.message["body"]["content"] == "Café\r\n"


# --- body choice and attachments -------------------------------------------------------------

ALTERNATIVE = """To: a@contoso.com
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=utf-8

plain version
--alt
Content-Type: text/html; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

<p>Caf=E9</p>
--alt--
"""


def test_html_is_preferred_and_the_text_alternative_is_not_an_attachment() -> None:
    data = crlf(ALTERNATIVE)

    conversion = convert(data, ["a@contoso.com"])

    assert conversion.message["body"] == {"contentType": "html", "content": "<p>Café</p>"}
    assert conversion.attachments == ()
    assert "attachments" not in conversion.with_attachments(data)


def test_alternative_without_html_shows_the_text() -> None:
    start = ALTERNATIVE.index("--alt\nContent-Type: text/html")
    data = crlf(ALTERNATIVE[:start] + "--alt--\n")

    conversion = convert(data, ["a@contoso.com"])

    assert conversion.message["body"] == {"contentType": "text", "content": "plain version"}
    assert conversion.attachments == ()


RELATED = """To: a@contoso.com
Content-Type: multipart/mixed; boundary="mix"

--mix
Content-Type: multipart/related; boundary="rel"

--rel
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain

see the logo
--alt
Content-Type: text/html

<p>Logo: <img src="CID:logo@contoso"></p>
--alt--
--rel
Content-Type: image/png; name="logo.png"
Content-ID: <logo@contoso>
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--rel
Content-Type: image/gif
Content-ID: <unused@contoso>
Content-Transfer-Encoding: base64

R0lGODlh
--rel--
--mix
Content-Type: image/jpeg; name="shown-but-attached.jpg"
Content-ID: <photo@contoso>
Content-Disposition: attachment
Content-Transfer-Encoding: base64

/9j/4A==
--mix--
"""


def test_inline_images_are_those_the_html_shows() -> None:
    data = crlf(RELATED.replace("</p>\n--alt--", '<img src="cid:photo@contoso"></p>\n--alt--'))

    conversion = convert(data, ["a@contoso.com"])
    resources = [a.resource(data) for a in conversion.attachments]

    assert conversion.message["body"]["contentType"] == "html"
    assert [(r["name"], r["contentType"], r["isInline"]) for r in resources] == [
        ("logo.png", "image/png", True),
        ("attachment-2.gif", "image/gif", False),
        ("shown-but-attached.jpg", "image/jpeg", False),
    ]
    assert resources[0]["contentId"] == "logo@contoso"
    assert base64.b64decode(resources[0]["contentBytes"]) == b"\x89PNG\r\n\x1a\n"
    assert base64.b64decode(resources[1]["contentBytes"]) == b"GIF89a"


def test_cid_image_of_a_text_body_is_not_inline() -> None:
    data = crlf(RELATED.replace("text/html", "text/x-other"))

    conversion = convert(data, ["a@contoso.com"])

    assert conversion.message["body"]["contentType"] == "text"
    assert [a.is_inline for a in conversion.attachments] == [False, False, False, False]


def test_cid_that_is_a_prefix_of_another_is_not_inline() -> None:
    """Regression: inline means `"cid:" + content_id in html`, a substring test, so
    an image `<logo>` counts as shown when the HTML only shows `cid:logo-dark`; Outlook then hides
    an attachment the reader never sees. Reproducer: related[html `<img src="cid:logo-dark">`,
    image Content-ID <logo>, image Content-ID <logo-dark>] → both isInline."""
    data = crlf("""To: a@contoso.com
Content-Type: multipart/related; boundary="rel"

--rel
Content-Type: text/html

<img src="cid:logo-dark">
--rel
Content-Type: image/png
Content-ID: <logo>

PNG
--rel
Content-Type: image/png
Content-ID: <logo-dark>

PNG2
--rel--
""")

    conversion = convert(data, ["a@contoso.com"])

    assert [(a.content_id, a.is_inline) for a in conversion.attachments] == [
        ("logo", False),
        ("logo-dark", True),
    ]


ATTACHMENTS = b"""To: a@contoso.com
Content-Type: multipart/mixed; boundary="mix"

--mix
Content-Type: text/plain

See attached.
--mix
Content-Type: application/pdf
Content-Disposition: attachment; filename*=utf-8''%E2%82%AC%20rate.pdf
Content-Transfer-Encoding: base64

JVBERi0x
--mix
Content-Type: application/pdf
Content-Disposition: attachment;
 filename*0*=utf-8''%E2%82;
 filename*1*=%AC%20long%20name%20;
 filename*2="part three.pdf"
Content-Transfer-Encoding: base64

JVBERi0y
--mix
Content-Type: application/msword; name="=?iso-8859-1?q?r=E9sum=E9.doc?="
Content-Disposition: attachment

--mix
Content-Type: text/plain; name="notes.txt"
Content-Disposition: attachment; filename="notes.txt"

first
--mix
Content-Type: text/plain; name="notes.txt"
Content-Disposition: attachment; filename="notes.txt"

second
--mix
Content-Type: application/pdf

%PDF-nameless
--mix--
"""


def test_attachment_names_types_and_bytes() -> None:
    data = crlf(ATTACHMENTS)

    conversion = convert(data, ["a@contoso.com"])
    resources = [a.resource(data) for a in conversion.attachments]

    assert conversion.message["body"] == {"contentType": "text", "content": "See attached."}
    assert [(r["name"], r["contentType"]) for r in resources] == [
        ("€ rate.pdf", "application/pdf"),
        ("€ long name part three.pdf", "application/pdf"),
        ("résumé.doc", "application/msword"),
        ("notes.txt", "text/plain"),
        ("notes.txt", "text/plain"),
        ("attachment-6.pdf", "application/pdf"),
    ]
    assert [base64.b64decode(r["contentBytes"]) for r in resources] == [
        b"%PDF-1",
        b"%PDF-2",
        b"",
        b"first",
        b"second",
        b"%PDF-nameless",
    ]
    assert [a.size for a in conversion.attachments] == [6, 6, 0, 5, 6, 13]
    assert all(r["@odata.type"] == "#microsoft.graph.fileAttachment" for r in resources)
    assert not any(r["isInline"] for r in resources)


def test_zero_byte_attachment_is_kept() -> None:
    data = crlf(
        b"To: a@contoso.com\nContent-Type: multipart/mixed; boundary=B\n\n--B\n\nbody\n"
        b"--B\nContent-Type: application/octet-stream\n"
        b"Content-Disposition: attachment; filename=empty.dat\n"
        b"Content-Transfer-Encoding: base64\n\n\n--B--\n"
    )

    conversion = convert(data, ["a@contoso.com"])

    [attachment] = conversion.attachments
    assert (attachment.name, attachment.size) == ("empty.dat", 0)
    assert attachment.resource(data)["contentBytes"] == ""


INNER = b"""From: Original Sender <orig@fabrikam.com>
To: a@contoso.com
Subject: =?utf-8?q?Re=3A_Angebot_f=C3=BCr_Q3/Q4?=
Content-Type: text/plain

inner body
"""


def test_attached_message_is_an_eml_named_after_its_subject_with_its_bytes() -> None:
    inner = crlf(INNER)
    data = (
        crlf(
            b"To: a@contoso.com\nContent-Type: multipart/mixed; boundary=B\n\n--B\n\n"
            b"forwarded\n--B\nContent-Type: message/rfc822\n\n"
        )
        + inner
        + crlf(b"\n--B\nContent-Type: message/rfc822\n\nFrom: x@y.com\n\nno subject\n--B--\n")
    )

    conversion = convert(data, ["a@contoso.com"])
    resources = [a.resource(data) for a in conversion.attachments]

    assert conversion.message["body"]["content"] == "forwarded"
    assert [(r["name"], r["contentType"]) for r in resources] == [
        ("Re_ Angebot für Q3_Q4.eml", "message/rfc822"),
        ("attached message.eml", "message/rfc822"),
    ]
    assert base64.b64decode(resources[0]["contentBytes"]) == inner
    assert conversion.attachments[0].size == len(inner)


def test_calendar_alternative_is_kept_as_an_attachment() -> None:
    data = crlf("""To: a@contoso.com
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain

You are invited.
--alt
Content-Type: text/html

<p>You are invited.</p>
--alt
Content-Type: text/calendar; method=REQUEST; charset=utf-8

BEGIN:VCALENDAR
METHOD:REQUEST
END:VCALENDAR
--alt--
""")

    conversion = convert(data, ["a@contoso.com"])

    assert conversion.message["body"] == {
        "contentType": "html",
        "content": "<p>You are invited.</p>",
    }
    assert [(a.name, a.content_type) for a in conversion.attachments] == [
        ("invite.ics", "text/calendar")
    ]
    assert attachment_bytes(conversion, data)["invite.ics"] == (
        b"BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR"
    )


def test_text_after_an_attachment_in_apple_mail_layout_joins_the_body() -> None:
    """Regression: Apple Mail sends alternative[text/plain, mixed[text/html,
    attachment, text/html]]. The body is the first HTML fragment; `_alternatives` then drops every
    text leaf of any multipart/alternative containing the body, so the second HTML fragment
    (the text after the attachment) is neither body nor attachment: "Regards, Tim" vanishes."""
    data = crlf("""To: a@contoso.com
Content-Type: multipart/alternative; boundary="A"

--A
Content-Type: text/plain

Hello, see the PDF.
Regards, Tim
--A
Content-Type: multipart/mixed; boundary="M"

--M
Content-Type: text/html

<html><body>Hello, see the PDF.</body></html>
--M
Content-Type: application/pdf; name=report.pdf
Content-Disposition: inline; filename=report.pdf
Content-Transfer-Encoding: base64

JVBERi0=
--M
Content-Type: text/html

<html><body>Regards, Tim</body></html>
--M--
--A--
""")

    conversion = convert(data, ["a@contoso.com"])
    shown = conversion.message["body"]["content"].encode() + b"".join(
        attachment_bytes(conversion, data).values()
    )

    assert conversion.message["body"]["contentType"] == "html"
    assert "report.pdf" in attachment_bytes(conversion, data)
    assert b"Regards, Tim" in shown


def mixed(*parts: str) -> bytes:
    """A multipart/mixed message of the given parts (each its header lines, a blank, a body)."""
    body = "".join(f"--M\n{part}\n" for part in parts)
    return crlf(
        'To: a@contoso.com\nContent-Type: multipart/mixed; boundary="M"\n\n' + body + "--M--\n"
    )


def test_inline_text_parts_of_a_mixed_message_are_kept_on_lines_of_their_own() -> None:
    data = mixed("Content-Type: text/plain\n\nOne", "Content-Type: text/plain\n\nTwo")

    conversion = convert(data, ["a@contoso.com"])

    assert conversion.message["body"] == {"contentType": "text", "content": "One\r\nTwo"}
    assert conversion.attachments == ()


def test_text_before_and_after_an_attachment_is_not_glued_together() -> None:
    data = mixed(
        "Content-Type: text/plain\n\nText text text.",
        "Content-Type: application/pdf; name=scan.pdf\nContent-Transfer-Encoding: base64\n\n"
        "JVBERi0=",
        "Content-Type: text/plain\n\nText text text.",
    )

    conversion = convert(data, ["a@contoso.com"])

    assert conversion.message["body"]["content"] == "Text text text.\r\nText text text."
    assert attachment_bytes(conversion, data) == {"scan.pdf": b"%PDF-"}


def test_inline_text_with_a_filename_is_shown_in_the_body() -> None:
    """RFC 2183: an inline part is shown when the message is; a filename does not make it an
    attachment. A named text part without `inline`, or marked attachment, stays a file."""
    data = mixed(
        "Content-Type: text/plain\n\nThe job log follows.\n",
        'Content-Type: text/plain\nContent-Disposition: inline; filename="job.log"\n\n'
        "started\nfinished",
        'Content-Type: text/plain\nContent-Disposition: attachment; filename="keep.txt"\n\nkept',
        'Content-Type: text/plain; name="named.txt"\n\nalso kept',
    )

    conversion = convert(data, ["a@contoso.com"])

    assert conversion.message["body"] == {
        "contentType": "text",
        "content": "The job log follows.\r\nstarted\r\nfinished",
    }
    assert attachment_bytes(conversion, data) == {"keep.txt": b"kept", "named.txt": b"also kept"}


def test_html_among_inline_parts_makes_an_html_body_with_the_text_escaped_in_order() -> None:
    data = mixed(
        "Content-Type: text/plain\n\nIntro & summary\nsecond line",
        "Content-Type: text/html\n\n<p>The <b>table</b></p>",
        "Content-Type: text/plain\n\nBye <3",
    )

    conversion = convert(data, ["a@contoso.com"])

    assert conversion.message["body"] == {
        "contentType": "html",
        "content": "<div>Intro &amp; summary<br>\nsecond line</div>\n"
        "<div><p>The <b>table</b></p></div>\n"
        "<div>Bye &lt;3</div>",
    }
    assert conversion.attachments == ()


def test_a_list_footer_after_an_html_alternative_joins_the_html_body() -> None:
    data = crlf("""To: a@contoso.com
Content-Type: multipart/mixed; boundary="M"

--M
Content-Type: multipart/alternative; boundary="A"

--A
Content-Type: text/plain

News
--A
Content-Type: text/html

<p>News</p>
--A--
--M
Content-Type: text/plain

Unsubscribe: <https://list.example/u>
--M--
""")

    conversion = convert(data, ["a@contoso.com"])

    assert conversion.message["body"] == {
        "contentType": "html",
        "content": "<div><p>News</p></div>\n<div>Unsubscribe: &lt;https://list.example/u&gt;</div>",
    }
    assert conversion.attachments == ()


def test_a_later_alternative_in_a_mixed_message_shows_its_html_in_the_body() -> None:
    """A note, then a forwarded newsletter as text and HTML alternatives: a reader shows the
    note and the newsletter's HTML; neither alternative becomes an attachment."""
    data = crlf("""To: a@contoso.com
Content-Type: multipart/mixed; boundary="M"

--M
Content-Type: text/plain

FYI
--M
Content-Type: multipart/alternative; boundary="A"

--A
Content-Type: text/plain

News in text
--A
Content-Type: text/html

<p>News</p>
--A--
--M--
""")

    conversion = convert(data, ["a@contoso.com"])

    assert conversion.message["body"] == {
        "contentType": "html",
        "content": "<div>FYI</div>\n<div><p>News</p></div>",
    }
    assert conversion.attachments == ()


def test_delivery_report_parts_are_text_attachments_with_readable_names() -> None:
    data = crlf("""To: a@contoso.com
Content-Type: multipart/report; report-type=delivery-status; boundary="R"

--R
Content-Type: text/plain

Your message could not be delivered.
--R
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.contoso.com

Final-Recipient: rfc822; gone@contoso.com
Action: failed
Status: 5.1.1
--R
Content-Type: text/rfc822-headers

Subject: quarterly report
--R--
""")

    conversion = convert(data, ["a@contoso.com"])

    assert conversion.message["body"]["content"] == "Your message could not be delivered."
    assert [(a.name, a.content_type) for a in conversion.attachments] == [
        ("delivery-status.txt", "message/delivery-status"),
        ("original-headers.txt", "text/rfc822-headers"),
    ]
    assert b"Status: 5.1.1" in attachment_bytes(conversion, data)["delivery-status.txt"]


def test_attachment_only_message_has_an_empty_body() -> None:
    data = crlf(
        b"To: a@contoso.com\nContent-Type: application/pdf; name=scan.pdf\n"
        b"Content-Transfer-Encoding: base64\n\nJVBERi0=\n"
    )

    conversion = convert(data, ["a@contoso.com"])

    assert conversion.message["body"] == {"contentType": "text", "content": ""}
    assert attachment_bytes(conversion, data) == {"scan.pdf": b"%PDF-"}


# --- properties from headers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "importance"),
    [
        ("Importance: High", "high"),
        ("Importance: low", "low"),
        ("X-Priority: 1 (Highest)", "high"),
        ("X-Priority: 2", "high"),
        ("X-Priority: 3 (Normal)", "normal"),
        ("X-Priority: 5", "low"),
        ("Priority: urgent", "high"),
        ("Priority: non-urgent", "low"),
        ("X-MSMail-Priority: High", "high"),
        ("Importance: low\nX-Priority: 1", "low"),  # Importance wins
        ("X-Priority: bogus", None),
        ("Subject: none given", None),
    ],
)
def test_importance(header: str, importance: str | None) -> None:
    conversion = convert(message(f"To: a@contoso.com\n{header}\n"), ["a@contoso.com"])

    assert conversion.message.get("importance") == importance


def test_receipt_requests() -> None:
    read = convert(
        message("To: a@contoso.com\nDisposition-Notification-To: device@contoso.com\n"),
        ["a@contoso.com"],
    )
    delivery = convert(
        message("To: a@contoso.com\nReturn-Receipt-To: device@contoso.com\n"), ["a@contoso.com"]
    )
    neither = convert(message("To: a@contoso.com\n"), ["a@contoso.com"])

    assert read.message.get("isReadReceiptRequested") is True
    assert "isDeliveryReceiptRequested" not in read.message
    assert delivery.message.get("isDeliveryReceiptRequested") is True
    assert "isReadReceiptRequested" not in delivery.message
    assert not {"isReadReceiptRequested", "isDeliveryReceiptRequested"} & neither.message.keys()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<20260101.4711@erp.contoso.com>", "<20260101.4711@erp.contoso.com>"),
        ("  <a.b@c>  ", "<a.b@c>"),
        ("<no-at-sign>", None),
        ("bare@contoso.com", None),
        ("<with space@contoso.com>", None),
        ("<a@>", None),
    ],
)
def test_message_id(value: str, expected: str | None) -> None:
    conversion = convert(message(f"To: a@contoso.com\nMessage-ID: {value}\n"), ["a@contoso.com"])

    assert conversion.message.get("internetMessageId") == expected


@pytest.mark.parametrize("value", ["<", "<@contoso.com>"])
def test_unparseable_message_id_is_omitted(value: str) -> None:
    """Regression: the standard library's Message-ID parser raises IndexError
    on `<` or `<@contoso.com>`; the fallback `headers.get_all(name)` parses the header again and
    raises the same error, so `convert` fails on the message instead of omitting the id."""
    data = message(f"To: a@contoso.com\nMessage-ID: {value}\n")

    conversion = convert(data, ["a@contoso.com"])

    assert "internetMessageId" not in conversion.message
    assert addresses(conversion, "toRecipients") == ["a@contoso.com"]


def test_malformed_message_id_is_omitted_not_rewritten() -> None:
    """Regression: `<two@at@signs>` is malformed and should be omitted, but the standard
    library's parser cuts it to `<two@at>`, which the check accepts: Graph is given a Message-ID
    the sender never used."""
    data = message("To: a@contoso.com\nMessage-ID: <two@at@signs>\n")

    assert "internetMessageId" not in convert(data, ["a@contoso.com"]).message


def test_threading_headers_become_mapi_properties() -> None:
    data = message(
        "To: a@contoso.com\nIn-Reply-To: <parent@contoso.com>\n"
        "References: <root@contoso.com>\n <parent@contoso.com>\n"
    )

    conversion = convert(data, ["a@contoso.com"])

    assert conversion.message["singleValueExtendedProperties"] == [
        {"id": "String 0x1042", "value": "<parent@contoso.com>"},
        {"id": "String 0x1039", "value": "<root@contoso.com> <parent@contoso.com>"},
    ]
    assert (
        "singleValueExtendedProperties"
        not in convert(message("To: a@contoso.com\n"), ["a@contoso.com"]).message
    )


def test_at_most_five_x_headers_and_the_rest_reported() -> None:
    data = message(
        "To: a@contoso.com\nX-Mailer: ScanToMail 2.1\nX-MS-Exchange-Organization-SCL: 1\n"
        "X-Priority: 1\nX-Job-Id: 4711\nX-Mailer: second copy\nReceived: from x\n"
        "X-Device: MFP-3\nx-tenant: contoso\nX-Spam-Score: 0\nX-Batch: 17\n"
        "X-Overflow-One: a\nX-Overflow-Two: b\n"
    )

    conversion = convert(data, ["a@contoso.com"])

    assert conversion.message["internetMessageHeaders"] == [
        {"name": "X-Mailer", "value": "ScanToMail 2.1"},
        {"name": "X-Job-Id", "value": "4711"},
        {"name": "X-Device", "value": "MFP-3"},
        {"name": "x-tenant", "value": "contoso"},
        {"name": "X-Batch", "value": "17"},
    ]
    assert conversion.dropped_headers == ("X-Overflow-One", "X-Overflow-Two")
    assert conversion.message["importance"] == "high"
    assert "internetMessageHeaders" not in conversion.without_custom_headers().message


def test_no_x_headers_no_header_collection() -> None:
    # Graph refuses an empty internetMessageHeaders array.
    conversion = convert(message("To: a@contoso.com\nX-MS-Has-Attach: yes\n"), ["a@contoso.com"])

    assert "internetMessageHeaders" not in conversion.message
    assert conversion.dropped_headers == ()


# --- senders ----------------------------------------------------------------------------------


def test_from_mailbox_keeps_the_display_name_and_replies_go_to_the_device() -> None:
    data = message('From: "Scanner, 3rd floor" <scanner@printer.local>\nTo: a@contoso.com\n')

    conversion = convert(data, ["a@contoso.com"], from_mailbox="scans@contoso.com")

    assert conversion.message["from"] == {
        "emailAddress": {"address": "scans@contoso.com", "name": "Scanner, 3rd floor"}
    }
    assert conversion.message["replyTo"] == [
        {"emailAddress": {"address": "scanner@printer.local", "name": "Scanner, 3rd floor"}}
    ]


def test_from_mailbox_keeps_an_existing_reply_to_or_none_when_told() -> None:
    data = message(
        "From: scanner@printer.local\nReply-To: Helpdesk <help@contoso.com>\nTo: a@contoso.com\n"
    )
    plain = message("From: scanner@printer.local\nTo: a@contoso.com\n")

    kept = convert(data, ["a@contoso.com"], from_mailbox="scans@contoso.com")
    silent = convert(
        plain, ["a@contoso.com"], from_mailbox="scans@contoso.com", reply_to_sender=False
    )

    assert kept.message["replyTo"] == [
        {"emailAddress": {"address": "help@contoso.com", "name": "Helpdesk"}}
    ]
    assert silent.message["from"] == {"emailAddress": {"address": "scans@contoso.com"}}
    assert "replyTo" not in silent.message


def test_without_from_mailbox_the_header_from_and_sender_are_kept() -> None:
    data = message(
        "From: Boss <boss@contoso.com>\nSender: assistant@contoso.com\nTo: a@contoso.com\n"
    )

    conversion = convert(data, ["a@contoso.com"])

    assert conversion.message["from"] == {
        "emailAddress": {"address": "boss@contoso.com", "name": "Boss"}
    }
    assert conversion.message["sender"] == {"emailAddress": {"address": "assistant@contoso.com"}}
    assert "replyTo" not in conversion.message


# --- signed mail -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header_section", "signed"),
    [
        (
            b'Content-Type: multipart/signed; protocol="application/pkcs7-signature";\r\n'
            b' micalg=sha-256; boundary="----=_sig"\r\n',
            True,
        ),
        (
            b'Content-Type: multipart/signed; protocol="application/pgp-signature"; '
            b"boundary=b\r\n\r\n",
            True,
        ),
        (
            b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; '
            b"boundary=b\r\n",
            True,
        ),
        (
            b"Subject: x\r\nContent-Type: application/pkcs7-mime; smime-type=signed-data;\r\n"
            b" name=smime.p7m\r\n",
            True,
        ),
        (b"Content-Type: Application/X-PKCS7-MIME; smime-type=enveloped-data\r\n", True),
        (b"Content-Type: multipart/mixed; boundary=b\r\n", False),
        (b"Content-Type: application/pkcs7-signature\r\n", False),
        (b"Subject: no content type\r\n", False),
    ],
)
def test_is_signed(header_section: bytes, signed: bool) -> None:
    assert is_signed(header_section) is signed


# --- random messages: never raise, exact bytes, valid requests ---------------------------------

address_pool = [
    "alice@contoso.com",
    "Bob@Contoso.com",
    "carol@fabrikam.com",
    "dave@fabrikam.com",
    "erin@example.org",
]
header_text = st.text(
    alphabet=st.characters(exclude_categories=["Cs", "Cc", "Zl", "Zp"]), max_size=40
)
display_names = header_text
filenames = st.one_of(
    st.none(),
    st.text(alphabet=st.characters(exclude_categories=["Cs", "Cc"]), min_size=1, max_size=30),
)
charsets = st.sampled_from(
    [
        "utf-8",
        "iso-8859-1",
        "windows-1252",
        "koi8-r",
        "shift_jis",
        "x-unknown",
        "us-ascii",
        "utf-16",
    ]
)
content_ids = st.sampled_from(["logo", "photo.1", "chart"])
x_names = st.from_regex(r"[Xx]-[A-Za-z][A-Za-z0-9-]{0,15}", fullmatch=True)


@st.composite
def random_leaf(draw: st.DrawFn) -> MIMEPart:
    part = MIMEPart(policy=SMTP)
    kind = draw(
        st.sampled_from(
            [
                "text/html",
                "text/plain",
                "image/png",
                "text/html",
                "application/pdf",
                "text/calendar",
                "message/rfc822",
            ]
        )
    )
    if kind == "message/rfc822":
        inner = EmailMessage(policy=SMTP)
        inner["Subject"] = draw(header_text)
        inner.set_content(draw(st.text(max_size=50)))
        part.set_content(inner)
    elif kind.startswith("text/"):
        charset = draw(charsets)
        text = draw(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=80))
        if kind == "text/html":
            text += "".join(
                f'<img src="cid:{cid}@x">' for cid in draw(st.lists(content_ids, max_size=2))
            )
        if charset == "utf-16":
            part.set_content(text.encode("utf-16"), "text", kind[5:], cte="base64")
            part.set_param("charset", charset)
        else:
            part.set_content(
                text.encode("utf-8", "replace"),
                "text",
                kind[5:],
                cte=draw(st.sampled_from(["base64", "quoted-printable"])),
            )
            part.set_param("charset", charset)
    else:
        part.set_content(
            draw(st.binary(max_size=200)),
            *kind.split("/"),
            cte=draw(st.sampled_from(["base64", "quoted-printable"])),
        )
    name = draw(filenames)
    if name is not None:
        part.add_header(
            "Content-Disposition", draw(st.sampled_from(["attachment", "inline"])), filename=name
        )
    if draw(st.booleans()):
        part["Content-ID"] = f"<{draw(content_ids)}@x>"
    return part


def random_tree(leaves: st.SearchStrategy[MIMEPart]) -> st.SearchStrategy[MIMEPart]:
    @st.composite
    def multipart(draw: st.DrawFn, children: st.SearchStrategy[MIMEPart]) -> MIMEPart:
        part = MIMEPart(policy=SMTP)
        part["Content-Type"] = "multipart/" + draw(
            st.sampled_from(["mixed", "alternative", "related"])
        )
        for child in draw(st.lists(children, min_size=1, max_size=3)):
            part.attach(child)
        return part

    return st.recursive(leaves, multipart, max_leaves=6)


def _number_boundaries(part: MIMEPart, counter: list[int]) -> None:
    if part.get_content_maintype() == "multipart":
        counter.append(len(counter))
        part.set_boundary(f"=_b{len(counter)}.x")
        for child in part.get_payload():
            _number_boundaries(child, counter)


@st.composite
def random_messages(draw: st.DrawFn) -> tuple[bytes, list[str]]:
    root = draw(random_tree(random_leaf()))
    _number_boundaries(root, [])
    root["From"] = str(Address(draw(display_names), addr_spec="device@printer.local"))
    for header in ("To", "Cc"):
        chosen = draw(st.lists(st.sampled_from(address_pool), max_size=3))
        if chosen:
            root[header] = ", ".join(chosen)
    root["Subject"] = draw(header_text)
    for _ in range(draw(st.integers(0, 8))):
        root[draw(x_names)] = draw(st.text(alphabet=string.printable.strip(), max_size=20))
    for header in draw(
        st.lists(
            st.sampled_from(
                [
                    "Importance: high",
                    "X-Priority: 5",
                    "Priority: urgent",
                    "Message-ID: <a@b.c>",
                    "In-Reply-To: <p@b.c>",
                    "Disposition-Notification-To: device@printer.local",
                ]
            ),
            unique=True,
            max_size=4,
        )
    ):
        name, value = header.split(": ")
        root[name] = value
    envelope = draw(
        st.lists(st.sampled_from([*address_pool, "hidden@example.net"]), min_size=1, max_size=5)
    )
    data = root.as_bytes(policy=SMTP)
    return (data if data.endswith(b"\r\n") else data + b"\r\n"), envelope


@pytest.fixture(scope="module")
def reference() -> Validator:
    if not REFERENCE.exists():
        pytest.skip(f"Microsoft's message schema is not present at {REFERENCE}")
    return Validator(json.loads(REFERENCE.read_text()), "#/$defs/sendMailRequestStrict")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(generated=random_messages(), from_mailbox=st.sampled_from(["", "svc@contoso.com"]))
def test_random_messages_convert_to_valid_requests_with_exact_bytes(
    reference: Validator, generated: tuple[bytes, list[str]], from_mailbox: str
) -> None:
    data, envelope = generated

    conversion = convert(data, envelope, from_mailbox=from_mailbox)
    request = {"message": conversion.with_attachments(data)}

    # Every envelope recipient exactly once, nobody else.
    keys = sorted({f"{a.rpartition('@')[0]}@{a.rpartition('@')[2].lower()}" for a in envelope})
    found = everyone(conversion)
    assert sorted(f"{a.rpartition('@')[0]}@{a.rpartition('@')[2].lower()}" for a in found) == keys
    # Each attachment carries exactly the part's decoded bytes.
    for attachment, resource in zip(
        conversion.attachments, request["message"].get("attachments", []), strict=True
    ):
        content = base64.b64decode(resource["contentBytes"], validate=True)
        assert content == decoded(data, attachment.part)
        assert attachment.size == len(content)
        assert resource["name"]
        if resource["isInline"]:
            assert f"cid:{resource['contentId']}" in conversion.message["body"]["content"]
    # Graph takes it: UTF-8 JSON, Microsoft's schema, the emulator's validator.
    document = json.loads(json.dumps(request, ensure_ascii=False).encode("utf-8"))
    assert reference.is_valid(document), json.dumps(document)[:2000]
    parse_send_mail(document)
    assert len(conversion.message.get("internetMessageHeaders", [])) <= 5
