"""The failed-login lockout counts per address, forgets old failures, and expires."""

from __future__ import annotations

from gateway.smtp.lockout import FailureLimiter


def test_login_lockout_counts_per_address_and_expires() -> None:
    now = [0.0]
    limiter = FailureLimiter(max_failures=3, window=60, lockout=300, clock=lambda: now[0])
    assert [limiter.failed("192.0.2.1") for _ in range(3)] == [False, False, True]
    assert limiter.locked("192.0.2.1") and not limiter.locked("192.0.2.2")
    now[0] = 301
    assert not limiter.locked("192.0.2.1")
    limiter.failed("192.0.2.3")
    now[0] = 500  # failures older than the window do not add up
    assert not limiter.failed("192.0.2.3") and not limiter.failed("192.0.2.3")
