"""Pure retry timing: exponential backoff with jitter (`Retry-After` is the transport's: see
`graph.classify`)."""

from __future__ import annotations

import random

JITTER = 0.2  # each wait is up to 20 % shorter than its stated interval, never longer


def backoff_delay(
    attempt: int, *, initial: float, maximum: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): `initial`, doubling up
    to `maximum`, each wait between 80 % and 100 % of that interval.

    The jitter only ever shortens a wait, so the documented timing holds as stated: with
    `retry_initial: 1m` the first retry comes within a minute, and no wait exceeds
    `retry_max`. Shortening spreads retries that started together just as well.
    """
    interval = min(maximum, initial * 2.0 ** max(0, attempt - 1))
    return interval * (rng or random).uniform(1.0 - JITTER, 1.0)
