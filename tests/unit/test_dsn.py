"""Delivery status notifications are valid RFC 3464 reports that never loop."""

from __future__ import annotations

from email import message_from_bytes, policy

from gateway.mime.dsn import Failure, build_dsn, is_notification

ORIGINAL = (
    b"From: erp@contoso.com\r\nTo: x@fabrikam.com\r\nSubject: Invoice 42\r\n\r\nsecret body\r\n"
)


def make() -> bytes:
    return build_dsn(
        original=ORIGINAL,
        original_sender="erp@contoso.com",
        queue_id="Q42",
        failure=Failure(
            ("x@fabrikam.com",),
            "5.0.0",
            "404 MailboxNotEnabledForRESTAPI",
            "the sending mailbox is not enabled",
        ),
        postmaster="postmaster@contoso.com",
        reporting_host="gw.contoso.com",
        arrival=1_790_000_000.0,
        now=1_790_000_060.0,
    )


def test_report_structure_and_fields() -> None:
    report = message_from_bytes(make(), policy=policy.default)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    assert report["To"] == "erp@contoso.com"
    assert report["Auto-Submitted"] == "auto-replied"
    text, status, headers = report.iter_parts()
    assert "Q42" in text.get_content() and "not enabled" in text.get_content()
    assert status.get_content_type() == "message/delivery-status"
    raw_status = status.as_string()
    assert "Final-Recipient: rfc822; x@fabrikam.com" in raw_status
    assert "Status: 5.0.0" in raw_status
    assert "Diagnostic-Code: X-Graph; 404 MailboxNotEnabledForRESTAPI" in raw_status
    assert headers.get_content_type() == "text/rfc822-headers"
    assert b"secret body" not in make()  # headers only, never the body


def test_notifications_are_recognised() -> None:
    assert is_notification(make())
    assert is_notification(b"From: a@b.c\r\nAuto-Submitted: auto-replied\r\n\r\nx")
    assert not is_notification(ORIGINAL)


def test_8bit_headers_and_diagnostics_make_a_valid_report() -> None:
    """A held message with raw 8-bit header bytes (UTF-8, windows-1252, a stray 0x80) used to
    crash the bounce (UnicodeEncodeError), so its sender was never told."""
    original = (
        b"From: Sc\xc3\xa4nner <scanner@contoso.com>\r\nTo: x@fabrikam.com\r\n"
        b"Subject: Caf\xe9\r\nX0: \x80\r\n\r\nbody\r\n"
    )
    raw = build_dsn(
        original=original,
        original_sender="scanner@contoso.com",
        queue_id="Q43",
        failure=Failure(
            ("x@fabrikam.com",),
            "5.1.1",
            "400 ErrorInvalidRecipients — naïve",
            "Graph rejected the recipients",
        ),
        postmaster="postmaster@contoso.com",
        reporting_host="gw.contoso.com",
        arrival=1_790_000_000.0,
        now=1_790_000_060.0,
    )
    assert raw.isascii()
    report = message_from_bytes(raw, policy=policy.default)
    _text, status, headers = report.iter_parts()
    shown = headers.get_content()
    assert "From: Scänner <scanner@contoso.com>" in shown
    assert "Subject: Café" in shown
    assert "Diagnostic-Code: X-Graph; 400 ErrorInvalidRecipients ? na?ve" in status.as_string()
