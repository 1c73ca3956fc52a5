"""The spool on real files: durable before 250, recoverable after a crash, never ambiguous."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gateway.errors import SpoolError
from gateway.spool import Spool
from gateway.spool.format import CorruptRecord
from gateway.spool.remover import Remover
from tests.support.gateway import arrival

MESSAGE = b"From: a@contoso.com\r\nTo: b@contoso.com\r\nSubject: x\r\n\r\nbody\r\n"


def store(spool: Spool, message: bytes = MESSAGE) -> str:
    return spool.store(
        arrival("a@contoso.com", "b@contoso.com"),
        message,
    )


@pytest.fixture
def spool(tmp_path: Path):
    spool = Spool(tmp_path / "spool")
    spool.open()
    yield spool
    spool.close()


def test_store_then_lease_round_trips_bytes_and_envelope(spool: Spool) -> None:
    binary = MESSAGE + bytes(range(256)) + b"\r\n.\r\n"
    queue_id = store(spool, binary)
    assert [found.queue_id for found in spool.recover()] == [queue_id]
    queued = spool.lease(queue_id)
    assert queued is not None
    assert queued.message == binary
    assert queued.envelope.rcpt_tos == ("b@contoso.com",)
    assert queued.envelope.peer == "127.0.0.1"
    assert spool.lease(queue_id) is None  # already leased


def test_file_and_directory_are_fsynced_before_store_returns(spool: Spool, monkeypatch) -> None:
    events: list[str] = []
    real_fsync, real_fdatasync, real_rename = os.fsync, os.fdatasync, os.rename

    def fsync(fd: int) -> None:
        events.append("fsync " + os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def fdatasync(fd: int) -> None:
        events.append("fdatasync " + os.readlink(f"/proc/self/fd/{fd}"))
        real_fdatasync(fd)

    def rename(src, dst) -> None:
        events.append(f"rename {src} -> {dst}")
        real_rename(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    monkeypatch.setattr(os, "rename", rename)
    queue_id = store(spool)
    queue_dir = spool.directory / "queue"
    tmp_file = spool.directory / "tmp" / f"{queue_id}.msg"
    assert events == [
        f"fdatasync {tmp_file}",
        f"rename {tmp_file} -> {queue_dir / (queue_id + '.msg')}",
        f"fsync {queue_dir}",
    ]


def test_recovery_requeues_in_flight_and_drops_partial_writes(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.open()
    delivered, in_flight = store(spool), store(spool)
    assert spool.lease(delivered) is not None
    spool.complete(delivered)
    assert spool.lease(in_flight) is not None
    (spool.directory / "tmp" / "0000PARTIAL.msg").write_bytes(b'SGG1 40\n{"queue_id"')
    spool.close()  # the process "dies" here with one message leased

    again = Spool(tmp_path / "spool")
    again.open()
    assert [(found.queue_id, found.requeued) for found in again.recover()] == [(in_flight, True)]
    assert list((again.directory / "tmp").iterdir()) == []
    assert again.lease(in_flight) is not None


def test_truncated_file_is_never_delivered(spool: Spool) -> None:
    queue_id = store(spool)
    path = spool.directory / "queue" / f"{queue_id}.msg"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(CorruptRecord, match="cut short"):
        spool.lease(queue_id)
    assert (spool.directory / "corrupt" / f"{queue_id}.msg").exists()


def test_hold_keeps_message_and_reason(spool: Spool) -> None:
    queue_id = store(spool)
    spool.lease(queue_id)
    spool.hold(queue_id, {"reason": "mailbox not enabled", "code": "MailboxNotEnabledForRESTAPI"})
    assert spool.count("hold") == 1
    note = (spool.directory / "hold" / f"{queue_id}.reason.json").read_text()
    assert "MailboxNotEnabledForRESTAPI" in note


def test_second_daemon_on_the_same_spool_is_refused(spool: Spool) -> None:
    other = Spool(spool.directory)
    with pytest.raises(SpoolError, match="in use by another gateway process"):
        other.open()


def test_queue_ids_are_unique_and_time_ordered(spool: Spool) -> None:
    ids = [store(spool) for _ in range(200)]
    assert len(set(ids)) == 200
    assert [found.queue_id for found in spool.recover()] == sorted(ids)
    assert [i[:13] for i in ids] == sorted(i[:13] for i in ids)


def test_unwritable_spool_raises_spool_error(spool: Spool) -> None:
    if os.geteuid() == 0:
        # root ignores permissions; make tmp/ unusable by replacing it with a file instead.
        (spool.directory / "tmp").rmdir()
        (spool.directory / "tmp").write_text("not a directory")
    else:
        (spool.directory / "tmp").chmod(0o500)
    with pytest.raises(SpoolError, match="cannot store message"):
        store(spool)


def test_retry_time_and_attempts_survive_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.open()
    queue_id = store(spool)
    spool.lease(queue_id)
    spool.record_attempt(queue_id, {"status": 503, "code": "ServiceUnavailable"})
    due = time.time() + 600
    spool.release(queue_id, due)
    spool.close()

    again = Spool(tmp_path / "spool")
    again.open()
    [found] = again.recover()
    assert (found.queue_id, found.requeued) == (queue_id, False)
    assert abs(found.next_attempt - due) < 1
    assert len(MESSAGE) < found.size < len(MESSAGE) + 1024  # the message and its envelope
    queued = again.lease(queue_id)
    assert queued is not None and queued.attempts == 1


def test_split_queues_a_durable_copy_for_some_recipients(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.open()
    queue_id = spool.store(
        arrival("a@contoso.com", "b@x.com", "c@x.com", "d@x.com"),
        MESSAGE,
    )
    queued = spool.lease(queue_id)  # as the engine holds it while it delivers
    assert queued is not None
    spool.record_attempt(queue_id, {"result": "deferred", "reason": "503"})
    due = time.time() + 300

    copy = spool.split(queued, ("c@x.com",), due, {"result": "deferred", "reason": "450"})
    spool.close()  # a crash right here: the copy is already durable

    again = Spool(tmp_path / "spool")
    again.open()
    recovered = {found.queue_id: found.next_attempt for found in again.recover()}
    assert set(recovered) == {queue_id, copy}  # the original was in flight: queued again
    assert abs(recovered[copy] - due) < 1
    copied = again.lease(copy)
    assert copied is not None
    assert copied.message == MESSAGE
    assert copied.envelope.rcpt_tos == ("c@x.com",)
    assert copied.envelope.received_at == queued.envelope.received_at  # lifetime goes on
    assert [a["reason"] for a in again.attempts(copy)] == ["503", "450"]
    assert copied.attempts == 2
    whole = again.lease(queue_id)
    assert whole is not None and len(whole.envelope.rcpt_tos) == 3


def test_split_that_cannot_be_written_leaves_nothing_behind(spool: Spool) -> None:
    queue_id = store(spool)
    queued = spool.lease(queue_id)
    assert queued is not None
    (spool.directory / "tmp").rmdir()
    (spool.directory / "tmp").write_text("not a directory")  # every write now fails
    with pytest.raises(SpoolError, match="cannot store message"):
        spool.split(queued, ("b@contoso.com",), time.time(), {"result": "deferred"})
    assert sorted(p.name for p in (spool.directory / "meta").iterdir()) == []
    assert [entry.queue_id for entry in spool.entries()] == [queue_id]  # the original, still leased


def test_admin_operations(spool: Spool) -> None:
    held, queued, gone = store(spool), store(spool), store(spool)
    assert spool.hold(held, {"reason": "administrator"}, state="queue")
    assert spool.state_of(held) == "hold"
    info = spool.show(held)
    assert info is not None
    assert info["hold"]["reason"] == "administrator"
    assert info["envelope"].mail_from == "a@contoso.com"
    assert [e.queue_id for e in spool.entries("hold")] == [held]
    assert spool.requeue(held)  # release
    assert spool.state_of(held) == "queue"
    assert spool.delete(gone)
    assert spool.state_of(gone) is None
    assert not spool.delete(gone)
    spool.lease(queued)
    assert not spool.delete(queued)  # never one being delivered
    assert spool.show("NOPE") is None


def test_concurrent_writers_share_directory_syncs(spool: Spool, monkeypatch) -> None:
    """Group commit: every store waits for a directory fsync begun after its rename."""
    renamed: dict[str, int] = {}
    synced: list[int] = []
    real_rename, real_fsync = os.rename, os.fsync
    clock = iter(range(10**9))

    def rename(src, dst) -> None:
        real_rename(src, dst)
        renamed[Path(dst).stem] = next(clock)

    def fsync(fd: int) -> None:
        started = next(clock)
        time.sleep(0.002)  # a slow disk makes writers pile up behind the sync
        real_fsync(fd)
        synced.append(started)

    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "fsync", fsync)
    with ThreadPoolExecutor(max_workers=16) as pool:
        ids = list(pool.map(lambda _n: store(spool), range(64)))
    assert len(ids) == 64
    assert len(synced) < 64  # shared
    for queue_id in ids:  # and each rename is covered by a sync that started after it
        assert any(start > renamed[queue_id] for start in synced)


def test_remover_removes_delivered_messages_and_close_waits_for_it(spool: Spool) -> None:
    ids = [store(spool) for _ in range(50)]
    for queue_id in ids:
        spool.lease(queue_id)
        spool.record_attempt(queue_id, {"result": "deferred"})
    remover = Remover(spool)
    for queue_id in ids:
        remover.remove(queue_id)
    remover.close()
    remover.close()  # twice is fine (drain runs it more than once)
    assert spool.count("active") == 0
    assert list((spool.directory / "meta").iterdir()) == []


def test_remover_logs_what_it_cannot_remove_and_goes_on(spool: Spool, logged) -> None:
    stuck, fine = store(spool), store(spool)
    spool.lease(fine)
    (spool.directory / "active" / f"{stuck}.msg").mkdir()  # unlink() of it fails
    remover = Remover(spool)
    remover.remove(stuck)
    remover.remove(fine)
    remover.close()
    [entry] = logged("spool_remove_failed")
    assert entry["queue_id"] == stuck
    assert "sent again at the next start" in entry["action"]
    assert spool.state_of(fine) is None


def test_a_listing_of_ids_sees_every_change_of_its_folder(spool: Spool) -> None:
    """`ids` keeps a folder's listing while the folder's mtime stays the same (a deep queue's
    page reads no file names again), and never past a change."""
    hold = spool.dir("hold")
    first, second = "0000000000001AAAAAA", "0000000000002BBBBBB"
    (hold / f"{first}.msg").write_bytes(b"")
    long_ago = time.time() - 60
    os.utime(hold, (long_ago, long_ago))
    assert spool.ids("hold") == [(first, "hold")]
    assert "hold" in spool.listed  # kept: the folder had not changed for a minute
    (hold / f"{second}.msg").write_bytes(b"")  # changes the folder's mtime
    assert spool.ids("hold") == [(first, "hold"), (second, "hold")]
    (hold / f"{first}.msg").unlink()
    assert spool.ids("hold") == [(second, "hold")]


def test_recover_names_the_outage_that_deferred_a_message(tmp_path: Path) -> None:
    """At start the spool says which waiting messages an outage of their tenant deferred (the
    engine parks those behind one probe), read in the same pass as the rest of recovery."""
    spool = Spool(tmp_path / "spool")
    spool.open()
    later = time.time() + 3600
    outage, own, now = store(spool), store(spool), store(spool)
    for queue_id, record in (
        (outage, {"result": "deferred", "reason": "503", "outage": "contoso"}),
        (own, {"result": "deferred", "reason": "its mailbox is busy"}),
    ):
        assert spool.lease(queue_id) is not None
        spool.defer(queue_id, later, record)
    spool.close()
    again = Spool(tmp_path / "spool")
    again.open()
    try:
        found = {due.queue_id: due.outage for due in again.recover()}
    finally:
        again.close()
    assert found == {outage: "contoso", own: "", now: ""}
