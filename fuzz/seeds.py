"""Build the seed corpora in `fuzz/corpus/<target>/` from the test messages and hand-written cases.

`python -m fuzz.seeds` replaces each target's folder with what the target's `seeds()` makes of
the messages in tests/data/corpus/*.eml (shrunk first: long runs of encoded lines cut to a few,
so structure, headers and encodings survive while the corpus stays small enough to commit) plus
its hand-written inputs. Deterministic: running it again changes nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from pathlib import Path

from fuzz.targets import CORPUS_DIR, FUZZ_DIR, NAMES, load

MESSAGES_DIR = FUZZ_DIR.parent / "tests" / "data" / "corpus"
KEPT_LONG_LINES = 6  # of each run of long lines (base64, quoted-printable, bare-LF binary)
LONG_LINE = 60
MAX_MESSAGE = 24 * 1024


def shrink(message: bytes) -> bytes:
    """`message` with every run of long lines cut to its first few, and at most MAX_MESSAGE."""
    kept: list[bytes] = []
    run = 0
    for line in message.split(b"\n"):
        run = run + 1 if len(line) >= LONG_LINE else 0
        if run <= KEPT_LONG_LINES:
            kept.append(line)
    return b"\n".join(kept)[:MAX_MESSAGE]


def messages(directory: Path = MESSAGES_DIR) -> dict[str, bytes]:
    """The test messages by name, shrunk."""
    return {path.stem: shrink(path.read_bytes()) for path in sorted(directory.glob("*.eml"))}


def file_name(name: str, data: bytes) -> str:
    """A seed's file name: what it is, and a short hash so that renaming is never needed."""
    return f"{name}-{hashlib.sha1(data).hexdigest()[:8]}"  # noqa: S324 - a name, not security


def build(targets: tuple[str, ...] = NAMES, corpus_dir: Path = CORPUS_DIR) -> dict[str, int]:
    """Write the seed corpora; the bytes written per target."""
    found = messages()
    written = {}
    for name in targets:
        target = load(name)
        directory = corpus_dir / name
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        total = 0
        for seed, data in sorted(target.seeds(found).items()):
            kept = data[: target.MAX_LEN]
            (directory / file_name(seed, kept)).write_bytes(kept)
            total += len(kept)
        written[name] = total
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--target",
        action="append",
        choices=NAMES,
        help="only this target (repeatable); default: all",
    )
    options = parser.parse_args(argv)
    written = build(tuple(options.target or NAMES))
    for name, size in written.items():
        count = len(list((CORPUS_DIR / name).iterdir()))
        print(f"{name:14} {count:4} files {size / 1024:8.1f} KiB")
    print(f"{'total':14} {sum(written.values()) / 1024:19.1f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
