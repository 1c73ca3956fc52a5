"""A spool on a full file system: new mail gets 452, nothing accepted is harmed.

Uses a 2 MiB tmpfs mounted for the test (needs root, as on CI); skipped where mounting is not
allowed.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.emulator import Emulator, Faults
from tests.e2e.test_pipeline import MESSAGE
from tests.support.gateway import make_config, run_gateway


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(directory: Path, leave: int) -> None:
    """Fill the file system until only about `leave` bytes are free."""
    stats = os.statvfs(directory)
    free = stats.f_bavail * stats.f_frsize
    (directory / "filler").write_bytes(b"\0" * max(0, free - leave))


async def test_full_spool_refuses_new_mail_and_keeps_queued_mail(
    small_disk: Path, tmp_path: Path, emulator: Emulator
) -> None:
    emulator.set_faults(Faults(outage_seconds=3600))
    spool = {"directory": str(small_disk / "spool")}
    smtp = {
        "listeners": [{"name": "lan", "address": "127.0.0.1", "port": 0}],
        "max_message_size": "256KiB",
    }  # so spool.min_free_space is 384 KiB
    config = make_config(
        tmp_path,
        emulator,
        smtp=smtp,
        spool=spool,
        delivery={"retry_initial": "1s", "retry_max": "1s"},
    )
    async with run_gateway(config) as gateway:
        assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE) == {}
        assert (await gateway.next_event()).result == "deferred"
        [queued] = list((small_disk / "spool" / "queue").glob("*.msg"))
        before = queued.read_bytes()
        fill(small_disk, leave=200 * 1024)

        def attempt(client):
            client.ehlo()
            return client.mail("scanner@contoso.com")

        code, text = await gateway.session(attempt)
        assert (code, text[:5]) == (452, b"4.3.1")
        # The message accepted earlier is intact and still queued.
        assert queued.read_bytes() == before

        (small_disk / "filler").unlink()
        emulator.set_faults(Faults())
        await gateway.delivered(1, timeout=30)
        assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE) == {}
        await gateway.delivered(1, timeout=30)


async def test_disk_filling_up_during_data_answers_452(
    small_disk: Path, tmp_path: Path, emulator: Emulator
) -> None:
    spool = {"directory": str(small_disk / "spool"), "min_free_space": 0}
    config = make_config(tmp_path, emulator, spool=spool)
    async with run_gateway(config) as gateway:
        fill(small_disk, leave=64 * 1024)
        big = MESSAGE + b"x" * 76 + b"\r\n"
        big = big + (b"y" * 998 + b"\r\n") * 200  # ~200 KB: more than is left

        def attempt(client):
            client.ehlo()
            client.mail("scanner@contoso.com")
            client.rcpt("alice@contoso.com")
            return client.data(big)

        code, text = await gateway.session(attempt)
    assert (code, text) == (452, b"4.3.1 Insufficient system storage, try again later")
    assert list((small_disk / "spool" / "queue").glob("*")) == []
    assert list((small_disk / "spool" / "tmp").glob("*")) == []
    assert emulator.delivered() == []


async def test_a_full_disk_during_an_outage_strands_nothing(
    small_disk: Path, tmp_path: Path, emulator: Emulator, logged
) -> None:
    """With no byte free while Graph answers 503, deferrals still work (the attempt history is
    best effort; a deferral is a rename and an mtime). Nothing stays in active/, no partial
    file is left, and when space and Graph come back everything is delivered, no restart."""
    emulator.set_faults(Faults(outage_seconds=3600))
    spool = {"directory": str(small_disk / "spool"), "min_free_space": 0}
    config = make_config(
        tmp_path,
        emulator,
        spool=spool,
        delivery={"retry_initial": "1s", "retry_max": "1s", "concurrency": 4, "mailbox_rate": 0},
    )
    count = 8
    async with run_gateway(config) as gateway:
        for _ in range(count):
            assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE) == {}
        for _ in range(count):
            assert (await gateway.next_event()).result == "deferred"
        fill(small_disk, leave=0)
        # Attempts with the disk full (the tenant is in outage by now: one probe a second).
        for _ in range(3):
            assert (await gateway.next_event()).result == "deferred"
        assert logged("history_not_written")
        assert logged("delivery_crashed") == []
        directory = small_disk / "spool"
        assert list((directory / "meta").glob("*.tmp")) == []
        (small_disk / "filler").unlink()
        emulator.set_faults(Faults())
        await gateway.delivered(count, timeout=30)
        # Delivered files are removed on a thread of their own, just after the event.
        for _ in range(100):
            if not list((directory / "active").glob("*")):
                break
            await asyncio.sleep(0.05)
        assert list((directory / "active").glob("*")) == []
        assert list((directory / "queue").glob("*")) == []
    assert len(emulator.delivered()) == count
