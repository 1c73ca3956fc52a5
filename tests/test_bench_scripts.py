"""The quick benchmarks still run against today's code, on a few messages.

They import the gateway's own classes (the DATA sink speaks the session's handler protocol),
so a change there can break them silently; here they run with tiny counts and must print
their figures. The figures themselves are for the notes, never asserted.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

QUICK = {
    "data_reader": (["bench/data_reader.py", "--big", "2", "--small", "20"], "gateway reader"),
    "accept": (["bench/accept.py", "--messages", "100", "--runs", "1"], "msg/s delivered"),
    "deliver": (["bench/deliver.py", "--messages", "100", "--runs", "1"], "msg/s"),
}


@pytest.mark.parametrize("name", sorted(QUICK))
def test_a_quick_benchmark_runs_and_prints_its_figures(name: str) -> None:
    command, expected = QUICK[name]
    done = subprocess.run(
        [sys.executable, *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert expected in done.stdout, done.stdout[-2000:]
