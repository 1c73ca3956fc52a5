"""The console's pure parts: sessions (idle timeout, unguessable IDs, CSRF), the queue filter,
and the message summary (headers and attachments, never the body)."""

from __future__ import annotations

import pytest

from gateway.console.filters import Filter, FilterError, parse_filter
from gateway.console.sessions import Sessions
from gateway.console.summary import summarize


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_ends_after_its_idle_time_and_activity_keeps_it() -> None:
    clock = Clock()
    sessions = Sessions(idle_timeout=600, clock=clock)
    session = sessions.create("olga", "operator")
    clock.now += 599
    assert sessions.get(session.id) is session  # in use: the idle time starts again
    clock.now += 599
    assert sessions.get(session.id) is session
    clock.now += 600
    assert sessions.get(session.id) is None
    assert sessions.get(session.id) is None and len(sessions) == 0


def test_session_ids_and_csrf_tokens_are_fresh_and_checked_exactly() -> None:
    sessions = Sessions(idle_timeout=600)
    one, two = sessions.create("olga", "operator"), sessions.create("olga", "operator")
    assert len({one.id, two.id, one.csrf, two.csrf}) == 4
    assert len(one.id) >= 40
    assert one.csrf_ok(one.csrf)
    assert not one.csrf_ok(two.csrf) and not one.csrf_ok("") and not one.csrf_ok(None)
    assert one.id not in repr(one) and one.csrf not in repr(one)
    assert sessions.get("made-up") is None and sessions.get(None) is None
    assert sessions.end(one.id) is one and sessions.get(one.id) is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, Filter()),
        ({"state": "held"}, Filter(state="hold")),
        ({"state": "queue"}, Filter(state="queue")),
        ({"state": "any", "sender": " Scanner@ "}, Filter(sender="scanner@")),
        ({"older_than": "1h", "newer_than": "2d"}, Filter(older_than=3600, newer_than=172800)),
        ({"page": "3", "per_page": "10"}, Filter(page=3, per_page=10)),
        ({"device": " ERP "}, Filter(device="erp")),
    ],
)
def test_filters_from_query_strings(query: dict[str, str], expected: Filter) -> None:
    assert parse_filter(query) == expected


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"state": "lost"}, "state:"),
        ({"older_than": "soon"}, "older_than:"),
        ({"page": "0"}, "page:"),
        ({"per_page": "100000"}, "per_page:"),
        ({"page": "two"}, "page:"),
    ],
)
def test_wrong_filters_are_named(query: dict[str, str], named: str) -> None:
    with pytest.raises(FilterError, match=f"^{named}"):
        parse_filter(query)


def test_summary_lists_headers_and_attachments_but_no_body() -> None:
    raw = (
        b"From: =?utf-8?q?Sc=C3=A4nner?= <scanner@contoso.com>\r\n"
        b"To: alice@contoso.com\r\n"
        b"Subject: =?utf-8?b?U2NhbiDinJM=?=\r\n"
        b"Message-ID: <1@x>\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nsecret body words\r\n"
        b"--b\r\nContent-Type: image/png; name=page.png\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n"
        b"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment\r\n\r\n%PDF\r\n"
        b"--b--\r\n"
    )
    summary = summarize(raw)
    assert summary["headers"]["From"] == "Scänner <scanner@contoso.com>"
    assert summary["headers"]["Subject"] == "Scan ✓"
    assert summary["attachments"] == [
        {"name": "page.png", "type": "image/png", "size": 5},
        {"name": "(no name)", "type": "application/pdf", "size": 4},
    ]
    assert "secret body words" not in repr(summary)
    assert summary["size"] == len(raw)


def test_a_page_reloading_itself_does_not_keep_a_session_alive() -> None:
    clock = Clock()
    sessions = Sessions(idle_timeout=600, clock=clock)
    session = sessions.create("vera", "viewer")
    for _ in range(59):  # the overview reloading itself every 10 s for ten minutes
        clock.now += 10
        assert sessions.get(session.id, touch=False) is session
    clock.now += 10
    assert sessions.get(session.id, touch=False) is None
