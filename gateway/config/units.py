"""Parse human-friendly sizes (`35MiB`, `10MB`, `512k`) and durations (`30s`, `5m`, `1h30m`).

Pure functions; they raise `ValueError` with a message that can be shown to an administrator.
"""

from __future__ import annotations

import math
import re

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
}
# Possessive quantifiers: a long run of digits with no unit after it fails at once instead of
# being retried at every split (a config value of 8,000 digits took seconds).
_SIZE_RE = re.compile(r"\s*+(\d++(?:\.\d++)?)\s*+([a-zA-Z]*+)\s*+")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION_PART = re.compile(r"\s*+(\d++(?:\.\d++)?)\s*+(ms|s|m|h|d|w)")
_LARGEST = 2**62  # sizes and durations beyond this are typing mistakes


def parse_size(value: str | int) -> int:
    """Bytes from `35MiB`, `10MB`, `1.5GiB` or a plain integer number of bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 35MiB, got a boolean")  # noqa: TRY004 - the config reader collects ValueErrors as issues
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    match = _SIZE_RE.fullmatch(str(value))
    if not match:
        raise ValueError(f"not a size: {_shown(value)} (use e.g. 35MiB, 10MB or a number of bytes)")
    number, unit = match.groups()
    factor = _SIZE_UNITS.get(unit.lower())
    if factor is None:
        raise ValueError(f"unknown size unit {unit!r} (use B, KB, KiB, MB, MiB, GB or GiB)")
    size = float(number) * factor
    if size > _LARGEST:
        raise ValueError(f"not a size: {_shown(value)} is far too large")
    return int(size)


def parse_duration(value: str | int | float) -> float:
    """Seconds from `30s`, `5m`, `1h30m`, `500ms`, `5d` or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, got a boolean")  # noqa: TRY004 - the config reader collects ValueErrors as issues
    if isinstance(value, int | float):
        if not math.isfinite(value) or value > _LARGEST:
            raise ValueError(f"not a duration: {_shown(value)} (use e.g. 30s, 5m, 1h30m or 5d)")
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    text = str(value).strip().lower()
    try:
        return parse_duration(float(text))
    except ValueError:
        pass
    position, total = 0, 0.0
    while match := _DURATION_PART.match(text, position):
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position == 0 or text[position:].strip() or total > _LARGEST:
        raise ValueError(f"not a duration: {_shown(value)} (use e.g. 30s, 5m, 1h30m or 5d)")
    return total


def format_size(size: int) -> str:
    """A size for humans: 35 MiB, 2.9 MB-ish values shown in the largest binary unit that fits."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor:
            return f"{size / factor:.1f}".rstrip("0").rstrip(".") + f" {unit}"
    return f"{size} B"


def _shown(value: object) -> str:
    """`value` quoted for an error message, cut short when long."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
