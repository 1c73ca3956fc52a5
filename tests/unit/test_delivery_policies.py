"""Graph answer classification, backoff and Retry-After parsing (pure)."""

from __future__ import annotations

import random

import pytest

from gateway.delivery.backoff import backoff_delay
from gateway.graph.classify import classify, parse_retry_after


@pytest.mark.parametrize(
    ("status", "code", "delivered", "permanent", "refresh"),
    [
        (202, "", True, False, False),
        (429, "ApplicationThrottled", False, False, False),
        (503, "ServiceUnavailable", False, False, False),
        (504, "", False, False, False),
        (500, "", False, False, False),
        (401, "InvalidAuthenticationToken", False, False, True),
        (403, "ErrorAccessDenied", False, False, False),
        (403, "ErrorSendAsDenied", False, True, False),
        (404, "MailboxNotEnabledForRESTAPI", False, True, False),
        (400, "ErrorInvalidRecipients", False, True, False),
        (400, "ErrorMessageSizeExceeded", False, True, False),
        (413, "RequestEntityTooLarge", False, True, False),
        (400, "SomethingNew", False, True, False),
    ],
)
def test_classification_table(
    status: int, code: str, delivered: bool, permanent: bool, refresh: bool
) -> None:
    outcome = classify(status, code)
    assert (outcome.delivered, outcome.permanent, outcome.refresh_token) == (
        delivered,
        permanent,
        refresh,
    )
    if not delivered:
        assert outcome.explanation


def test_access_denied_explains_the_portal_setting() -> None:
    text = classify(403, "ErrorAccessDenied").explanation
    assert "ApplicationAccessPolicy" in text
    assert "admin consent" in text


def test_backoff_doubles_with_jitter_and_caps() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(n, initial=60, maximum=3600, rng=rng) for n in range(1, 10)]
    assert 48 <= delays[0] <= 60
    assert 96 <= delays[1] <= 120
    assert all(d <= 3600 for d in delays)
    assert delays[-1] >= 2880


def test_backoff_never_waits_longer_than_the_stated_interval() -> None:
    """README: the first retry of a temporary failure comes within `retry_initial` (1 m), and
    each later one within its doubled interval; jitter only shortens (it used to add ±20 %,
    so the first retry could come after 72 s)."""
    rng = random.Random(19)
    for _ in range(500):
        for attempt, stated in enumerate((60, 120, 240, 480, 960, 1920, 3600, 3600), start=1):
            delay = backoff_delay(attempt, initial=60, maximum=3600, rng=rng)
            assert 0.8 * stated <= delay <= stated, (attempt, delay)


def test_retry_after_forms() -> None:
    assert parse_retry_after("120", now=0) == 120.0
    assert parse_retry_after(None, now=0) is None
    assert parse_retry_after("soon", now=0) is None
    assert parse_retry_after("Sun, 22 Nov 2026 04:00:30 GMT", now=1795320000.0) == 30.0
