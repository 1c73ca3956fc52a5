"""One fuzz target in this process: replay its regressions and seeds, then fuzz it with atheris.

`python -m fuzz.worker NAME --seconds N --artifacts DIR` is what `fuzz.run` starts per target,
so a crash, a hang or an out-of-memory stops only that target. Replay runs every file of
`fuzz/regressions/NAME/` and `fuzz/corpus/NAME/` through `one_input` in plain Python and prints
a `REPLAYING` line before each file, a `REPLAY-FAIL` line per failing file and a `REPLAY-DONE`
summary (JSON). The files that pass
seed a scratch corpus (new inputs go there, never into the repository); then libFuzzer runs for
N seconds and exits, writing the first new crashing input to DIR. A bug that a failing
regression already shows (same exception, same place) does not stop fuzzing: it is counted
(`KNOWN-HIT`) so the time goes to finding others while it waits for its fix. Logs are
silenced: a target's inputs are mostly invalid and the gateway logs every one.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from fuzz.targets import FUZZ_DIR, NAMES, inputs, load

# What coverage is measured in (imported under instrumentation), for every target: the
# gateway, and the parsers it relies on.
INSTRUMENTED = ("gateway", "email", "yaml", "json", "aiosmtpd.proxy_protocol", "ipaddress")
RSS_LIMIT_MB = 2048
UNIT_TIMEOUT = 10  # seconds for one input: more is a hang


def where(error: BaseException) -> str:
    """The innermost frame of the gateway (else of anything but the fuzz code) that raised."""
    frames = traceback.extract_tb(error.__traceback__)
    for wanted in ("/gateway/", "/site-packages/"):
        for frame in reversed(frames):
            if wanted in frame.filename:
                return f"{_short(frame.filename)}:{frame.lineno} in {frame.name}"
    if not frames:
        return "?"
    return f"{_short(frames[-1].filename)}:{frames[-1].lineno} in {frames[-1].name}"


def _short(filename: str) -> str:
    for marker in ("/site-packages/", f"{FUZZ_DIR.parent}/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def signature(error: BaseException) -> str:
    """What tells one bug from another: the exception type and where it was raised."""
    return f"{type(error).__name__} at {where(error)}"


def replay(one_input: Callable[[bytes], None], files: list[Path]) -> tuple[list[Path], set[str]]:
    """Run every file; print a line per failure. The files that passed, and the signatures of
    the failures."""
    passed, failures = [], set()
    for path in files:
        print(f"REPLAYING {_relative(path)}", flush=True)  # the last words if it hangs or dies
        try:
            one_input(path.read_bytes())
        except Exception as error:  # noqa: BLE001 - every exception here is a finding
            failures.add(signature(error))
            message = str(error).splitlines()[0][:300] if str(error) else ""
            print(
                f"REPLAY-FAIL {_relative(path)}: {type(error).__name__}: {message} "
                f"[{where(error)}]",
                flush=True,
            )
        else:
            passed.append(path)
    summary = {"replayed": len(files), "failed": len(files) - len(passed)}
    print("REPLAY-DONE " + json.dumps(summary), flush=True)
    return passed, failures


def skipping_known(one_input: Callable[[bytes], None], known: set[str]) -> Callable[[bytes], None]:
    """`one_input` that lets through (and counts) the bugs a failing regression already shows,
    so fuzzing goes on to find others while those wait for their fix."""
    hits: dict[str, int] = {}

    def guarded(data: bytes) -> None:
        try:
            one_input(data)
        except Exception as error:
            key = signature(error)
            if key not in known:
                raise
            hits[key] = count = hits.get(key, 0) + 1
            if str(count).strip("0") == "1":  # 1, 10, 100...: libFuzzer may exit at any time
                print("KNOWN-HIT " + json.dumps({"signature": key, "count": count}), flush=True)

    return guarded


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _silence_logs() -> None:
    logging.disable(logging.CRITICAL)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL),
        logger_factory=structlog.ReturnLoggerFactory(),
    )


def _atheris() -> Any:
    """The atheris module (the `fuzz` extra), or None when it is not installed."""
    try:
        return importlib.import_module("atheris")
    except ImportError:
        print(
            "NO-ATHERIS atheris is not installed: replay only (pip install -e '.[fuzz]')",
            flush=True,
        )
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("target", choices=NAMES)
    parser.add_argument("--seconds", type=int, default=15, help="fuzzing time; 0: replay only")
    parser.add_argument(
        "--artifacts", type=Path, default=Path.cwd(), help="where libFuzzer writes crashing inputs"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="libFuzzer's random seed (0: a new one each run)"
    )
    parser.add_argument(
        "--stop-on-known",
        action="store_true",
        help="stop at a crash a failing regression already shows (default: count it and go on)",
    )
    options = parser.parse_args(argv)
    name = options.target
    atheris = _atheris() if options.seconds > 0 else None
    if atheris is not None:
        with atheris.instrument_imports(include=list(INSTRUMENTED)):
            target = load(name)  # the gateway's modules are first imported here
    else:
        target = load(name)
    _silence_logs()
    files = inputs(name)
    passed, known = replay(target.one_input, files)
    if atheris is None:
        return 0 if len(passed) == len(files) else 1
    one_input = target.one_input
    if not options.stop_on_known:
        one_input = skipping_known(one_input, known)
    # libFuzzer exits without running atexit handlers: `fuzz.run` points TMPDIR at a folder
    # it removes afterwards.
    work = Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-corpus-"))
    for index, path in enumerate(passed):
        shutil.copyfile(path, work / f"{index:04d}-{path.name}")
    options.artifacts.mkdir(parents=True, exist_ok=True)
    args = [
        sys.argv[0],
        f"-max_total_time={options.seconds}",
        f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-max_len={target.MAX_LEN}",
        f"-timeout={UNIT_TIMEOUT}",
        *([f"-seed={options.seed}"] if options.seed else []),
        f"-artifact_prefix={options.artifacts}/{name}-",
        "-print_final_stats=1",
        str(work),
    ]
    sys.stdout.flush()
    atheris.Setup(args, one_input)
    atheris.Fuzz()  # exits the process when done or on a crash
    return 0  # pragma: no cover - Fuzz() does not return


if __name__ == "__main__":
    sys.exit(main())
