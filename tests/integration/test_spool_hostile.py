"""Hostile or corrupt spool entries are quarantined in corrupt/, never followed or delivered.

What a restored backup, a hand edit, a disk error or a hostile local user can leave in queue/:
links (dangling, to a record outside the spool, to /dev/zero), a FIFO, a directory named like a
message, heads that claim huge envelopes, envelopes of the wrong types. Each is moved aside
with a log line, quickly, without allocating what it claims, and the real mail goes on.
"""

from __future__ import annotations

import json
import os
import resource
from pathlib import Path

import pytest

from gateway.spool import Spool
from gateway.spool.format import MAGIC, CorruptRecord, Envelope, encode, new_queue_id
from tests.conftest import Logged
from tests.support.gateway import arrival

MESSAGE = b"From: a@contoso.com\r\nTo: b@contoso.com\r\nSubject: x\r\n\r\nbody\r\n"


@pytest.fixture
def spool(tmp_path: Path):
    spool = Spool(tmp_path / "spool")
    spool.open()
    yield spool
    spool.close()


DROP = object()  # a field left out of the envelope


def record(queue_id: str, changes: dict[str, object]) -> bytes:
    """A queue file whose envelope has `changes` (any JSON, right types or not)."""
    fields: dict[str, object] = {
        "queue_id": queue_id,
        "mail_from": "a@contoso.com",
        "rcpt_tos": ["b@contoso.com"],
        "received_at": 1.0,
        "client": "loopback",
        "peer": "127.0.0.1",
        "listener": "lan",
        "size": len(MESSAGE),
    }
    fields.update(changes)
    head = json.dumps({key: value for key, value in fields.items() if value is not DROP}).encode()
    return MAGIC + b" " + str(len(head)).encode() + b"\n" + head + MESSAGE


def good(spool: Spool) -> str:
    return spool.store(
        arrival("a@contoso.com", "b@contoso.com"),
        MESSAGE,
    )


def place(spool: Spool, make) -> str:
    queue_id = new_queue_id()
    make(spool.directory / "queue" / f"{queue_id}.msg", queue_id)
    return queue_id


def outside_record(tmp_path: Path):
    def make(path: Path, queue_id: str) -> None:
        target = tmp_path / "elsewhere.msg"
        envelope = Envelope(
            queue_id, "ceo@contoso.com", ("b@contoso.com",), 1.0, "x", "", "", len(MESSAGE)
        )
        target.write_bytes(encode(envelope, MESSAGE))
        path.symlink_to(target)

    return make


ENTRIES = {
    "dangling symlink": lambda path, _id: path.symlink_to(path.parent / "nothing-here"),
    "symlink to /dev/zero": lambda path, _id: path.symlink_to("/dev/zero"),
    "fifo": lambda path, _id: os.mkfifo(path),
    "directory": lambda path, _id: path.mkdir(),
}


@pytest.mark.parametrize("kind", sorted(ENTRIES))
def test_special_entries_are_quarantined_at_start_up(
    spool: Spool, kind: str, logged: Logged
) -> None:
    """Start-up used to stop at a dangling link (FileNotFoundError in recover); a FIFO hung the
    workers; /dev/zero grew memory to gigabytes."""
    real = good(spool)
    bad = place(spool, ENTRIES[kind])
    assert [found.queue_id for found in spool.recover()] == [real]
    assert os.path.lexists(spool.directory / "corrupt" / f"{bad}.msg")
    assert not os.path.lexists(spool.directory / "queue" / f"{bad}.msg")
    [line] = logged("spool_corrupt")
    assert line["queue_id"] == bad and "not a regular file" in line["reason"]
    assert spool.lease(real) is not None


def test_a_link_to_a_record_outside_the_spool_is_never_delivered(
    spool: Spool, tmp_path: Path
) -> None:
    bad = place(spool, outside_record(tmp_path))
    with pytest.raises(CorruptRecord):  # the lease path, as when it appears after start-up
        spool.lease(bad)
    assert os.path.islink(spool.directory / "corrupt" / f"{bad}.msg")
    assert spool.recover() == []


@pytest.mark.parametrize("kind", ["symlink to /dev/zero", "fifo", "directory"])
def test_leasing_a_special_entry_quarantines_it_at_once(spool: Spool, kind: str) -> None:
    bad = place(spool, ENTRIES[kind])
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CorruptRecord):
        spool.lease(bad)
    assert spool.peek(bad) is None
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 50_000  # KiB
    assert os.path.lexists(spool.directory / "corrupt" / f"{bad}.msg")


BROKEN = {
    "size as text": {"size": "60"},
    "size null": {"size": None},
    "size float": {"size": 60.0},
    "size bool": {"size": True},
    "negative size": {"size": -1},
    "mail_from a number": {"mail_from": 5},
    "rcpt_tos a string": {"rcpt_tos": "b@contoso.com"},
    "rcpt_tos of numbers": {"rcpt_tos": [1, 2]},
    "received_at text": {"received_at": "yesterday"},
    "missing client": {"client": DROP},
    "client null": {"client": None},
    "another queue id": {"queue_id": "0" * 19},
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_envelopes_of_the_wrong_types_are_corrupt(spool: Spool, case: str) -> None:
    queue_id = new_queue_id()
    body = record(queue_id, BROKEN[case])
    (spool.directory / "queue" / f"{queue_id}.msg").write_bytes(body)
    with pytest.raises(CorruptRecord):
        spool.lease(queue_id)
    assert (spool.directory / "corrupt" / f"{queue_id}.msg").exists()


@pytest.mark.parametrize(
    "content",
    [
        MAGIC + b" 999999999999\n{}",  # a head that claims a terabyte envelope (MemoryError)
        MAGIC + b" 200000\n" + b"[" * 100_000 + b"]" * 100_000,  # RecursionError in json
        MAGIC + b" 2\n{}",  # an envelope with no fields
        MAGIC + b" 12\n" + b"x" * 12,  # not JSON
        b"GARBAGE\n",
        b"",
    ],
    ids=["huge head", "deep nesting", "empty envelope", "not json", "no magic", "empty file"],
)
def test_heads_that_lie_are_corrupt(spool: Spool, content: bytes) -> None:
    queue_id = place(spool, lambda path, _id: path.write_bytes(content))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CorruptRecord):
        spool.peek(queue_id)
    with pytest.raises(CorruptRecord):
        spool.lease(queue_id)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 50_000  # KiB


def test_a_message_longer_than_its_envelope_says_is_corrupt(spool: Spool) -> None:
    queue_id = good(spool)
    path = spool.directory / "queue" / f"{queue_id}.msg"
    path.write_bytes(path.read_bytes() + b"extra, appended by hand\r\n")
    with pytest.raises(CorruptRecord, match="written to by hand"):
        spool.lease(queue_id)


def test_hostile_side_files_are_ignored(spool: Spool) -> None:
    """An attempt history or hold reason that is a link to /dev/zero is not read."""
    queue_id = good(spool)
    (spool.directory / "meta" / f"{queue_id}.json").symlink_to("/dev/zero")
    assert spool.attempts(queue_id) == []
    info = spool.show(queue_id)
    assert info is not None and info["attempts"] == []


def test_queue_ids_from_administrators_cannot_name_other_files(spool: Spool) -> None:
    assert spool.state_of("../../etc/passwd") is None
    assert spool.show("../queue/x") is None
    assert spool.delete("../lock") is False
