"""A deep fuzzing run: every target for 300 s (`python -m fuzz.run`, which CI runs for 15 s each).

Replays fuzz/regressions and the seed corpus, then fuzzes each target in its own process and
prints executions, coverage gained and the result per target; a new crashing input is saved in
the run folder it names (move it to fuzz/regressions/<target>/). Needs the `fuzz` extra
(`pip install -e '.[fuzz]'`). Any further arguments go to `fuzz.run` (`--target headers`,
`--seconds-per-target 3600`, `--run-dir DIR`).
Run: .venv/bin/python bench/fuzz.py [--seconds-per-target 300] [--target NAME ...]
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    # A subprocess in the repository root: `import fuzz` from here would find this file.
    command = [sys.executable, "-m", "fuzz.run", "--seconds-per-target", "300", *sys.argv[1:]]
    sys.exit(subprocess.run(command, cwd=ROOT, check=False).returncode)
