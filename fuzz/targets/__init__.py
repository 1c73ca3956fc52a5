"""The fuzz targets by name, and where their seed corpora and regressions live.

A target module has `one_input(data: bytes) -> None`, which raises only on a real bug (the
errors a function is documented to raise are caught inside it); `seeds(messages)`, its
hand-written inputs plus those it derives from the test messages; and `MAX_LEN`, the longest
input worth trying. Target modules never import atheris: only `fuzz.worker` does.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol, cast

NAMES = ("convert", "headers", "sender_policy", "data_reader", "proxy", "spool_record", "config")
FUZZ_DIR = Path(__file__).resolve().parent.parent
CORPUS_DIR = FUZZ_DIR / "corpus"
REGRESSIONS_DIR = FUZZ_DIR / "regressions"


class Target(Protocol):
    """What `fuzz.worker`, `fuzz.seeds` and the replay test use of a target module."""

    MAX_LEN: int
    one_input: Callable[[bytes], None]
    seeds: Callable[[Mapping[str, bytes]], dict[str, bytes]]


def load(name: str) -> Target:
    """The target module called `name` (one of NAMES)."""
    if name not in NAMES:
        raise ValueError(f"unknown fuzz target {name!r}; targets: {', '.join(NAMES)}")
    return cast(Target, importlib.import_module(f"fuzz.targets.{name}"))


def inputs(name: str) -> list[Path]:
    """The files to replay for a target: its regressions first, then its seed corpus."""
    found: list[Path] = []
    for directory in (REGRESSIONS_DIR / name, CORPUS_DIR / name):
        if directory.is_dir():
            found.extend(
                sorted(
                    path
                    for path in directory.iterdir()
                    if path.is_file() and not path.name.startswith(".")
                )
            )
    return found
