"""Every fuzz regression and seed, replayed through its target in plain Python (no atheris).

A crash the fuzzer found once is saved in fuzz/regressions/<target>/; this keeps it fixed in the
normal test suite, where atheris is not installed. The targets' own checks (a spoofed sender
let through, a DATA reader that disagrees with its reference, ...) are part of each replay.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.targets import CORPUS_DIR, NAMES, REGRESSIONS_DIR, inputs, load

CASES = [(name, path) for name in NAMES for path in inputs(name)]


@pytest.mark.parametrize(
    ("name", "path"),
    CASES,
    ids=[f"{name}/{path.parent.parent.name}/{path.name}" for name, path in CASES],
)
def test_target_does_not_raise(name: str, path: Path) -> None:
    load(name).one_input(path.read_bytes())


@pytest.mark.parametrize("name", NAMES)
def test_every_target_has_seeds(name: str) -> None:
    seeds = list((CORPUS_DIR / name).iterdir())
    assert seeds, f"fuzz/corpus/{name} is empty: run python -m fuzz.seeds"


def test_targets_import_without_atheris() -> None:
    # The replay above must work where the `fuzz` extra is not installed: only the worker
    # imports atheris, and only to fuzz.
    code = "import sys, fuzz.targets as t; [t.load(n) for n in t.NAMES]; print('atheris' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=CORPUS_DIR.parent.parent,
    )
    assert result.stdout.strip() == "False"


def test_seed_corpus_stays_commit_sized() -> None:
    total = sum(path.stat().st_size for path in CORPUS_DIR.rglob("*") if path.is_file())
    total += sum(path.stat().st_size for path in REGRESSIONS_DIR.rglob("*") if path.is_file())
    assert total < 2 * 1024 * 1024
