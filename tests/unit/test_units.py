"""Sizes and durations as administrators write them."""

from __future__ import annotations

import pytest

from gateway.config import format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("35MiB", 35 * 1024**2),
        ("10MB", 10_000_000),
        ("512k", 512_000),
        ("1.5GiB", int(1.5 * 1024**3)),
        (4096, 4096),
        ("4096", 4096),
        ("2 mib", 2 * 1024**2),
    ],
)
def test_sizes(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "MiB", "12XB", "-5", True, "1..2MB", "9" * 400, "9" * 400 + ".5 GiB", "1" * 8000 + "x!"],
)
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("5d", 432000.0),
        (90, 90.0),
        ("2.5", 2.5),
    ],
)
def test_durations(text: str | int, expected: float) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["soon", "5 minutes", "m5", "1h x", False, "inf", "nan", float("inf"), "9" * 400 + "s", "5m5"],
)
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_format_size() -> None:
    assert format_size(35 * 1024**2) == "35 MiB"
    assert format_size(1536) == "1.5 KiB"
    assert format_size(12) == "12 B"


def test_a_long_value_is_refused_with_a_short_message() -> None:
    """A pasted run of 8,000 digits is refused (once a regular expression retried it at every
    split), and the message does not repeat it."""
    with pytest.raises(ValueError, match="duration") as refused:
        parse_duration("1" * 8000 + "x")
    assert len(str(refused.value)) < 120
