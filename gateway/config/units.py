"""Parse human-friendly sizes (`35MiB`, `10MB`, `512k`) and durations (`30s`, `5m`, `1h30m`).

Pure functions; they raise `ValueError` with a message that can be shown to an administrator.
"""

from __future__ import annotations

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
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")


def parse_size(value: str | int) -> int:
    """Bytes from `35MiB`, `10MB`, `1.5GiB` or a plain integer number of bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 35MiB, got a boolean")  # noqa: TRY004
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    match = _SIZE_RE.match(str(value))
    if not match:
        raise ValueError(f"not a size: {value!r} (use e.g. 35MiB, 10MB or a number of bytes)")
    number, unit = match.groups()
    factor = _SIZE_UNITS.get(unit.lower())
    if factor is None:
        raise ValueError(f"unknown size unit {unit!r} (use B, KB, KiB, MB, MiB, GB or GiB)")
    return int(float(number) * factor)


def parse_duration(value: str | int | float) -> float:
    """Seconds from `30s`, `5m`, `1h30m`, `500ms`, `5d` or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, got a boolean")  # noqa: TRY004
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    text = str(value).strip().lower()
    try:
        return parse_duration(float(text))
    except ValueError:
        pass
    position, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if text[position : match.start()].strip():
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position == 0 or text[position:].strip():
        raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 5m, 1h30m or 5d)")
    return total


def format_size(size: int) -> str:
    """A size for humans: 35 MiB, 2.9 MB-ish values shown in the largest binary unit that fits."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor:
            return f"{size / factor:.1f}".rstrip("0").rstrip(".") + f" {unit}"
    return f"{size} B"
