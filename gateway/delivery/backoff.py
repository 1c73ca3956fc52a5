"""Pure retry timing: exponential backoff with jitter, and `Retry-After` parsing."""

from __future__ import annotations

import random
from email.utils import parsedate_to_datetime


def backoff_delay(
    attempt: int, *, initial: float, maximum: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): doubling, ±20 % jitter."""
    base = min(maximum, initial * 2.0 ** max(0, attempt - 1))
    jitter = (rng or random).uniform(0.8, 1.2)
    return min(maximum, base * jitter)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or HTTP date); None if absent/bad."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)
