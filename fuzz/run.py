"""Replay every regression and seed, then fuzz each target for a while, one process per target.

`python -m fuzz.run [--seconds-per-target N] [--target NAME ...]` runs `fuzz.worker` for each
target in turn (a crash, hang or out-of-memory in one does not stop the others) and prints a
line per target: inputs replayed, executions, coverage gained, result. Then, for each problem,
the regression file that failed or the new crashing input (saved in the run folder) with its
exception and the gateway function that raised it. Exit status 1 if any target failed.

A new crashing input belongs in `fuzz/regressions/<target>/`, named by what it triggers, so
that every later run (and `tests/test_fuzz_corpus.py`) replays it. N defaults to 15 s (CI);
`bench/fuzz.py` runs 300 s per target.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from fuzz.targets import NAMES

DEFAULT_SECONDS = 15
GRACE = 120  # seconds a worker may take beyond its fuzzing time (start-up, replay)
_STATUS = re.compile(r"^#(\d+)\s+(INITED|NEW|REDUCE|pulse|DONE)\s+cov: (\d+) ft: (\d+)")
_STAT = re.compile(r"^stat::(\w+):\s+(\d+)")
_RATE = re.compile(r"exec/s: (\d+)")


@dataclass
class Outcome:
    """What one worker did."""

    target: str
    replayed: int = 0
    replay_failures: list[str] = field(default_factory=list)
    executions: int = 0
    exec_per_sec: int = 0
    cov_start: int | None = None
    cov_end: int | None = None
    new_units: int = 0
    crash: str = ""  # what libFuzzer reported: a Python exception, a timeout, out of memory
    crash_input: str = ""
    known_hits: dict[str, int] = field(default_factory=dict)  # failing regressions' bugs, again
    error: str = ""  # the worker itself failed (no replay summary, killed after the deadline)
    seconds: float = 0.0
    log: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.replay_failures or self.crash or self.error)


def parse_log(outcome: Outcome, text: str) -> None:
    """Fill `outcome` from a worker's output (its own lines and libFuzzer's)."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if not _worker_line(outcome, line) and not _fuzzer_line(outcome, line):
            _crash_line(outcome, line, lines[index + 1 :])
    if "REPLAY-DONE " not in text:
        replaying = [line for line in lines if line.startswith("REPLAYING ")]
        where = f" while replaying {replaying[-1].split(' ', 1)[1]}" if replaying else ""
        outcome.error = (outcome.error or "the worker stopped") + where


def _worker_line(outcome: Outcome, line: str) -> bool:
    word, _, rest = line.partition(" ")
    if word == "REPLAY-FAIL":
        outcome.replay_failures.append(rest)
    elif word == "REPLAYING":
        outcome.replayed += 1
    elif word == "REPLAY-DONE":
        outcome.replayed = json.loads(rest)["replayed"]
    elif word == "KNOWN-HIT":
        hit = json.loads(rest)
        outcome.known_hits[hit["signature"]] = hit["count"]
    else:
        return False
    return True


def _fuzzer_line(outcome: Outcome, line: str) -> bool:
    if status := _STATUS.match(line):
        outcome.executions = int(status.group(1))
        if status.group(2) == "INITED":
            outcome.cov_start = int(status.group(3))
        outcome.cov_end = int(status.group(3))
        if rate := _RATE.search(line):
            outcome.exec_per_sec = int(rate.group(1))
    elif stat := _STAT.match(line):
        name, value = stat.group(1), int(stat.group(2))
        if name == "number_of_executed_units":
            outcome.executions = value
        elif name == "average_exec_per_sec" and value:  # 0 when the run was under a second
            outcome.exec_per_sec = value
        elif name == "new_units_added":
            outcome.new_units = value
    else:
        return False
    return True


def _crash_line(outcome: Outcome, line: str, after: list[str]) -> None:
    if "=== Uncaught Python exception: ===" in line and after:
        outcome.crash = after[0].strip()[:300] + _frame(after[1:])
    elif "ERROR: libFuzzer: timeout" in line:
        outcome.crash = "timeout: one input ran longer than the unit timeout"
    elif "ERROR: libFuzzer: out-of-memory" in line:
        outcome.crash = "out of memory: " + line.split("out-of-memory", 1)[1].strip(" ()")
    elif "Test unit written to " in line:
        outcome.crash_input = line.split("Test unit written to ", 1)[1].strip()


def _frame(traceback_lines: list[str]) -> str:
    """` [gateway/x.py:12 in f]`: the innermost gateway frame of a printed traceback."""
    frames = []
    for line in traceback_lines:
        found = re.match(r'\s*File "([^"]+)", line (\d+), in (\S+)', line)
        if found:
            frames.append(found.groups())
        elif line and not line.startswith(" ") and frames:
            break  # the exception line ends the traceback
    root = f"{Path(__file__).resolve().parent.parent}/"
    for wanted in ("/gateway/", "/site-packages/"):
        for filename, lineno, function in reversed(frames):
            if wanted in filename:
                short = filename.split("/site-packages/", 1)[-1].removeprefix(root)
                return f" [{short}:{lineno} in {function}]"
    if frames:
        filename, lineno, function = frames[-1]
        return f" [{filename.removeprefix(root)}:{lineno} in {function}]"
    return ""


def run_target(name: str, seconds: int, run_dir: Path, seed: int = 0) -> Outcome:
    """Run one worker to its end (or its deadline) and read what it did."""
    outcome = Outcome(name, log=str(run_dir / f"{name}.log"))
    command = [
        sys.executable,
        "-m",
        "fuzz.worker",
        name,
        "--seconds",
        str(seconds),
        "--artifacts",
        str(run_dir),
        "--seed",
        str(seed),
    ]
    started = time.monotonic()
    # The worker's scratch files (spool, config, grown corpus) go here, removed afterwards:
    # libFuzzer ends the process without running its clean-up. In memory where there is
    # /dev/shm: the spool target fsyncs on every rename.
    memory = Path("/dev/shm")  # noqa: S108 - a private folder made by mkdtemp
    scratch = Path(
        tempfile.mkdtemp(prefix=f"fuzz-{name}-", dir=memory if memory.is_dir() else None)
    )
    with Path(outcome.log).open("wb") as log:
        worker = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TMPDIR": str(scratch)},
            start_new_session=True,  # in this folder: `python -m fuzz.run` found `fuzz` here
        )
        try:
            worker.wait(timeout=seconds + GRACE)
        except subprocess.TimeoutExpired:
            outcome.error = f"no result after {seconds + GRACE} s: stopped"
            os.killpg(worker.pid, signal.SIGTERM)  # libFuzzer exits cleanly on SIGTERM
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
    outcome.seconds = time.monotonic() - started
    shutil.rmtree(scratch, ignore_errors=True)
    text = Path(outcome.log).read_text(errors="replace")
    parse_log(outcome, text)
    if outcome.error and not outcome.replay_failures:
        last = [line for line in text.splitlines() if line.strip()][-3:]
        outcome.error += " — last output: " + " | ".join(last)
    elif worker.returncode not in (0, None) and not outcome.failed:
        outcome.error = f"the worker exited with status {worker.returncode}"
    return outcome


def summary_line(outcome: Outcome) -> str:
    failures = len(outcome.replay_failures)
    replay = f"replay {outcome.replayed - failures}/{outcome.replayed} ok"
    if outcome.cov_end is not None:
        gained = outcome.cov_end - (outcome.cov_start or 0)
        fuzz = (
            f"{outcome.executions:>9,} execs {outcome.exec_per_sec:>6,}/s  "
            f"cov {outcome.cov_end:>5} (+{gained}, {outcome.new_units} new inputs)"
        )
    else:
        fuzz = "not fuzzed"
    result = "FAIL" if outcome.failed else "ok"
    return f"{outcome.target:14} {replay:18} {fuzz:62} {outcome.seconds:5.0f} s  {result}"


def details(outcome: Outcome) -> list[str]:
    lines = [
        f"  {outcome.target}: regression failed: {failure}" for failure in outcome.replay_failures
    ]
    for known, count in outcome.known_hits.items():
        lines.append(
            f"  {outcome.target}: fuzzing hit a failing regression's bug again "
            f"{count}+ times (went on): {known}"
        )
    if outcome.crash:
        saved = outcome.crash_input or "(no input saved)"
        lines.append(f"  {outcome.target}: new crash: {outcome.crash}")
        lines.append(
            f"      input: {saved}  — save it as fuzz/regressions/{outcome.target}/"
            "<what-it-triggers>"
        )
    if outcome.error:
        lines.append(f"  {outcome.target}: {outcome.error}")
    if lines:
        lines.append(f"      log: {outcome.log}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--seconds-per-target",
        type=int,
        default=DEFAULT_SECONDS,
        help=f"fuzzing time per target (default {DEFAULT_SECONDS}; 0: replay only)",
    )
    parser.add_argument(
        "--target",
        action="append",
        choices=NAMES,
        help="only this target (repeatable); default: all",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="libFuzzer's seed: the same seed explores the same inputs, so a CI run can be "
        "repeated (default 0: a new seed each run, for exploring)",
    )
    parser.add_argument(
        "--run-dir",
        type=Path,
        help="where logs and crashing inputs go (default: a new temporary folder)",
    )
    options = parser.parse_args(argv)
    seconds = options.seconds_per_target
    if seconds > 0 and importlib.util.find_spec("atheris") is None:
        print("atheris is not installed (pip install -e '.[fuzz]'): replaying only")
        seconds = 0
    run_dir = options.run_dir or Path(tempfile.mkdtemp(prefix="fuzz-run-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"fuzzing {seconds} s per target; logs and crashing inputs in {run_dir}", flush=True)
    outcomes = []
    for name in options.target or NAMES:
        outcome = run_target(name, seconds, run_dir, options.seed)
        outcomes.append(outcome)
        print(summary_line(outcome), flush=True)
    problems = [line for outcome in outcomes for line in details(outcome)]
    if problems:
        print("\nProblems:")
        print("\n".join(problems))
    failed = [outcome.target for outcome in outcomes if outcome.failed]
    print(
        f"\n{len(outcomes) - len(failed)}/{len(outcomes)} targets ok"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    if not failed and options.run_dir is None:
        shutil.rmtree(run_dir, ignore_errors=True)  # only logs: nothing to look at
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
