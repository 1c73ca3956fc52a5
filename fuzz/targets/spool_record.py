"""Fuzz target `spool_record`: a queue file of any content through the spool's reading paths.

The input is written as `queue/<id>.msg` in a scratch spool, then `Spool.open`, `recover`,
`entries`, `peek`, `show` and `lease` read it, as start-up, `queue list/show` and a delivery
worker do. The only error they may raise is `CorruptRecord`, and `lease` must then have moved
the file to corrupt/. What they return is checked too: an envelope with the field types the
rest of the gateway relies on, and `lease` agreeing with `format.decode` (the in-memory reader
of the same format). Memory is measured while they run: a small file that makes the reader
allocate more than `MEMORY_BUDGET` (a length field claiming gigabytes) is a bug.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import shutil
import tempfile
import tracemalloc
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.spool.format import CorruptRecord, Envelope, decode, encode
from gateway.spool.store import STATES, Spool

MAX_LEN = 16 * 1024
QUEUE_ID = "018F3A2B4C5D6E0A1B2"  # the form new_queue_id() makes
MEMORY_BUDGET = 64 * 1024 * 1024  # bytes traced at the peak, for inputs of at most MAX_LEN
_FIELD_TYPES: dict[str, Any] = {
    "queue_id": str,
    "mail_from": str,
    "received_at": (int, float),
    "client": str,
    "peer": str,
    "listener": str,
    "size": int,
    "send_as": str,
    "user": str,
}
_root: Path | None = None


def one_input(data: bytes) -> None:
    """Queue `data` as a spool file and read it every way the gateway does."""
    root = _scratch_spool()
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        _read_all_ways(root, data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        if not tracing:
            tracemalloc.stop()
    if peak > MEMORY_BUDGET:
        raise AssertionError(f"reading a {len(data)}-byte spool file allocated {peak} bytes")


def _read_all_ways(root: Path, data: bytes) -> None:
    spool = Spool(root)
    spool.open()
    try:
        (root / "queue" / f"{QUEUE_ID}.msg").write_bytes(data)
        recovered = spool.recover()
        if [(r.queue_id, r.size) for r in recovered] != [(QUEUE_ID, len(data))]:
            raise AssertionError(f"recover() found {recovered}")
        if [(e.queue_id, e.state) for e in spool.entries()] != [(QUEUE_ID, "queue")]:
            raise AssertionError(f"entries() found {list(spool.entries())}")
        try:
            peeked = spool.peek(QUEUE_ID)
        except CorruptRecord:
            peeked = None
        if peeked is not None:
            _check_types(peeked, data)
        shown = spool.show(QUEUE_ID)
        if shown is None or ("envelope" not in shown and "error" not in shown):
            raise AssertionError(f"show() gave {shown}")
        if "envelope" in shown:
            _check_types(shown["envelope"], data)
        _check_lease(spool, root, data)
    finally:
        spool.close()


def _check_lease(spool: Spool, root: Path, data: bytes) -> None:
    """`lease` may refuse more than `format.decode` (a head claiming bytes that are not
    there, an envelope naming another file), never less; when both read it, they agree."""
    try:
        leased = spool.lease(QUEUE_ID)
    except CorruptRecord:
        if not (root / "corrupt" / f"{QUEUE_ID}.msg").is_file():
            raise AssertionError("a corrupt record was not moved to corrupt/") from None
        return
    if leased is None:
        raise AssertionError("lease() found no queued message")
    _check_types(leased.envelope, data)
    try:
        expected = decode(data)
    except CorruptRecord as error:
        raise AssertionError(f"lease read {leased}; format.decode: {error}") from None
    if (leased.envelope, leased.message) != expected:
        raise AssertionError(f"lease read {leased}; format.decode read {expected}")


def _check_types(envelope: Envelope, data: bytes) -> None:
    """The field types delivery relies on (JSON gives any type; bool is not an int here;
    recipients were a JSON list, not a string read as a sequence of characters)."""
    values = {name: getattr(envelope, name) for name in _FIELD_TYPES}
    wrong = [
        f"{name}={value!r}"
        for name, value in values.items()
        if not isinstance(value, _FIELD_TYPES[name]) or isinstance(value, bool)
    ]
    if not all(isinstance(recipient, str) for recipient in envelope.rcpt_tos):
        wrong.append(f"rcpt_tos={envelope.rcpt_tos!r}")
    if isinstance(envelope.size, int) and envelope.size < 0:
        wrong.append(f"size={envelope.size}")
    first, _, rest = data.partition(b"\n")
    head = json.loads(rest[: int(first.split(b" ")[1])])  # the spool has read it already
    if not isinstance(head.get("rcpt_tos"), list):
        wrong.append(f"rcpt_tos={head.get('rcpt_tos')!r} in the file")
    if wrong:
        raise AssertionError(f"the spool returned an envelope with {', '.join(wrong)}")


def _scratch_spool() -> Path:
    """One spool directory per process, emptied before each input."""
    global _root  # noqa: PLW0603 - a new directory per input would cost more than the test
    if _root is None:
        _root = Path(tempfile.mkdtemp(prefix="fuzz-spool-"))  # fuzz.run puts TMPDIR in memory
        atexit.register(shutil.rmtree, _root, True)
    for state in (*STATES, "tmp", "meta"):
        directory = _root / state
        if directory.is_dir():
            for path in directory.iterdir():
                path.unlink()
    return _root


# --- seeds ----------------------------------------------------------------------------------

_ENVELOPE = Envelope(
    QUEUE_ID,
    "scanner@contoso.com",
    ("alice@contoso.com", "bob@fabrikam.com"),
    1_700_000_000.25,
    "printers",
    "192.168.10.7",
    "lan",
    0,
)


def record(message: bytes, **changes: Any) -> bytes:
    """The spool file the gateway writes for `message`."""
    return encode(dataclasses.replace(_ENVELOPE, **{"size": len(message), **changes}), message)


_HAND_WRITTEN = {
    "empty-file": b"",
    "no-newline": b"SGG1 40",
    "cut-short": record(b"Subject: x\r\n\r\nbody\r\n")[:-3],
    "longer-than-said": record(b"x") + b"extra",
    "empty-message": record(b""),
    "bounce": record(b"Subject: undelivered\r\n\r\n", send_as="postmaster@contoso.com", user="erp"),
    "bad-magic": b"SGG2 2\n{}",
    "head-not-json": b"SGG1 5\n{nope",
    "head-missing-field": b'SGG1 30\n{"queue_id":"018F3A2B4C5D6E0A1B2"}',
    "head-names-another-file": record(b"x", queue_id="018F3A2B4C5D6E0A1B3"),
    "head-extra-field": record(b"")[:-1] + b',"extra":1}',
}


def seeds(messages: Mapping[str, bytes]) -> dict[str, bytes]:
    """Records of the smaller test messages as the gateway writes them, and broken files."""
    small = sorted(messages.items(), key=lambda item: len(item[1]))[:8]
    return {**{f"eml-{name}": record(data) for name, data in small}, **_HAND_WRITTEN}
