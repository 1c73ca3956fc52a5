"""The log writer on a real pipe: a reader that stops never blocks the writer, and every line
is either written or counted as dropped."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import threading
from collections.abc import Iterator

import pytest
import structlog

from gateway.observability.logging import configure_logging, flush_logs
from gateway.observability.logwriter import CAPACITY, LogWriter

F_SETPIPE_SZ = 1031  # Linux


def notice(count: int) -> str:
    return json.dumps({"event": "log_lines_dropped", "count": count}) + "\n"


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, F_SETPIPE_SZ, 4096)  # fills after four 1 KiB lines
    yield read_end, write_end
    for fd in (read_end, write_end):
        with contextlib.suppress(OSError):
            os.close(fd)


def start_reading(fd: int, into: bytearray) -> threading.Thread:
    """Start reading the pipe at last, in a thread, until its writers close it."""

    def read_all() -> None:
        while chunk := os.read(fd, 65536):
            into.extend(chunk)

    reading = threading.Thread(target=read_all)
    reading.start()
    return reading


def test_a_stalled_reader_never_blocks_and_no_line_goes_unaccounted(
    pipe: tuple[int, int],
) -> None:
    read_end, write_end = pipe
    stream = os.fdopen(write_end, "w", closefd=False)
    writer = LogWriter(stream, notice, capacity=100)
    lines = [json.dumps({"event": "line", "n": n, "pad": "x" * 1000}) + "\n" for n in range(1000)]

    def log_everything() -> None:
        for line in lines:  # in two pieces: a line is kept or dropped whole, never cut
            writer.write(line[:-1])
            writer.write("\n")

    logging_thread = threading.Thread(target=log_everything)
    logging_thread.start()
    logging_thread.join(timeout=10)
    assert not logging_thread.is_alive(), "write() blocked on a pipe nobody reads"

    received = bytearray()
    reading = start_reading(read_end, received)
    assert writer.drain(timeout=10)
    writer.close()
    stream.close()
    os.close(write_end)
    reading.join(timeout=10)

    entries = [json.loads(line) for line in received.decode().splitlines()]
    written = [entry["n"] for entry in entries if entry["event"] == "line"]
    dropped = sum(entry["count"] for entry in entries if entry["event"] == "log_lines_dropped")
    assert written == sorted(written) and len(set(written)) == len(written)  # in order, once
    assert written[:4] == [0, 1, 2, 3]  # the first lines out are the first lines logged
    assert dropped > 0
    assert len(written) + dropped == len(lines)  # each line written or counted, none vanished


def test_drain_waits_for_every_line_and_close_stops_the_thread(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    fcntl.fcntl(write_end, F_SETPIPE_SZ, 65536)
    stream = os.fdopen(write_end, "w", closefd=False)
    writer = LogWriter(stream, notice)
    for n in range(50):
        writer.write(f"line {n}")  # as print() does: the text, then the newline on its own
        writer.write("\n")
    assert writer.drain(timeout=10)
    assert os.read(read_end, 65536).decode().splitlines() == [f"line {n}" for n in range(50)]
    before = {thread for thread in threading.enumerate() if thread.name == "log-writer"}
    writer.close()
    after = {thread for thread in threading.enumerate() if thread.name == "log-writer"}
    assert len(before - after) == 1  # this writer's thread has ended


def test_the_drop_notice_is_a_log_line_like_the_others(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    stream = os.fdopen(write_end, "w", closefd=False)
    configure_logging("info", "json", stream=stream)  # the daemon's own set-up, on a stuck pipe
    log = structlog.get_logger("test")
    # More than can be held while nobody reads: the buffer, plus the batch (up to a full
    # buffer) that the writer thread took out of it and is stuck writing.
    total = 2 * CAPACITY + 500
    for n in range(total):
        log.info("filler", n=n)
    received = bytearray()
    reading = start_reading(read_end, received)
    assert flush_logs(timeout=30)
    configure_logging("info", "json", stream=io.StringIO())  # closes the writer on the pipe
    stream.close()
    os.close(write_end)
    reading.join(timeout=10)

    entries = [json.loads(line) for line in received.decode().splitlines()]
    [notice] = [entry for entry in entries if entry["event"] == "log_lines_dropped"]
    assert notice["level"] == "warning"
    assert notice["timestamp"].endswith("Z")  # stamped like every other line
    assert "mail was not affected" in notice["action"]
    fillers = sum(1 for entry in entries if entry["event"] == "filler")
    assert fillers + notice["count"] == total
