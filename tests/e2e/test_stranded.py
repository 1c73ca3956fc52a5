"""No acknowledged message is stranded: whatever goes wrong while delivering it, it ends
delivered, held with a reason, or bounced — and the rest of the queue goes on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.config import Config, load_config
from gateway.delivery import engine as engine_module
from gateway.emulator import Emulator
from gateway.graph import transport as submit_module
from gateway.spool.format import Envelope, encode, new_queue_id
from gateway.spool.store import Spool
from tests.conftest import Logged
from tests.e2e.test_pipeline import MESSAGE
from tests.support.gateway import arrival, config_document, make_config, run_gateway, write_config

FAST = {"retry_initial": "1s", "retry_max": "2s", "concurrency": 2}


def tenant_mode(tmp_path: Path, emulator: Emulator, mode: str) -> Config:
    document = config_document(tmp_path, emulator, delivery=FAST)
    document["tenants"][0]["mode"] = mode
    return load_config(write_config(tmp_path, document))


@pytest.mark.parametrize(
    ("mode", "header"),
    [
        ("mime", b"To:.:\r\n"),  # the header parser raised inside the Bcc rewrite
        ("mime", b"Cc::;l\r\n"),
        ("json", b'Content-Type: text/plain; charset="a\0b"\r\n'),  # codecs.lookup: ValueError
        ("json", b"To:\\@\r\n"),
    ],
)
@pytest.mark.usefixtures("queue_backend")
async def test_headers_that_crashed_delivery_are_delivered(
    tmp_path: Path, emulator: Emulator, mode: str, header: bytes, logged: Logged
) -> None:
    config = tenant_mode(tmp_path, emulator, mode)
    message = MESSAGE.replace(b"Subject:", header + b"Subject:")
    async with run_gateway(config) as gateway:
        assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], message) == {}
        event = await gateway.next_event()
    assert event.result == "delivered", event
    [delivered] = emulator.delivered()
    assert delivered.recipients["bcc"] + delivered.recipients["to"] == ["alice@contoso.com"]
    assert logged("delivery_crashed") == []


@pytest.mark.usefixtures("queue_backend")
async def test_an_unexpected_error_holds_the_message_and_the_queue_goes_on(
    tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch, logged: Logged
) -> None:
    """A bug in delivery (here: the converter raising on one message) ends with that message
    held, its reason in `queue show`, the traceback's summary in the log, and nothing about it
    on the wire; every other message is delivered; a restart does not try it again."""
    real_convert = submit_module.convert

    def convert(data: bytes, *args, **kwargs):
        if b"poison" in data:
            raise RuntimeError("bug in the converter")
        return real_convert(data, *args, **kwargs)

    monkeypatch.setattr(submit_module, "convert", convert)
    config = tenant_mode(tmp_path, emulator, "json")
    poison = MESSAGE.replace(b"Subject: Scan", b"Subject: poison")
    async with run_gateway(config) as gateway:
        assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], poison) == {}
        for _ in range(3):
            assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE) == {}
        events = [await gateway.next_event() for _ in range(4)]
        [held] = [event for event in events if event.result == "held"]
        assert sorted(event.result for event in events) == ["delivered"] * 3 + ["held"]
        info = await gateway.gateway.queue.show(held.queue_id)
    assert info is not None and info["state"] == "hold"
    assert "RuntimeError" in info["hold"]["reason"]
    assert "queue release" in info["hold"]["reason"]
    [crashed] = logged("delivery_crashed")
    assert crashed["queue_id"] == held.queue_id
    assert "transport.py" in crashed["where"] and "RuntimeError" in crashed["exception"]
    assert "bug in the converter" not in held.reason  # the exception text is for the log only
    # After a restart the held message stays held; nothing is left in active/ or queue/.
    async with run_gateway(config) as gateway:
        queue = gateway.gateway.queue
        assert await queue.state_of(held.queue_id) == "hold"
        assert [entry.queue_id for entry in await queue.entries()] == [held.queue_id]
    assert len(emulator.delivered()) == 3


async def test_a_message_left_in_active_goes_back_to_the_queue_without_a_restart(
    tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch, logged: Logged
) -> None:
    """A worker that failed so badly it could not put its message back (a failing disk) leaves
    it in active/ with no lease: the periodic check queues it again."""
    monkeypatch.setattr(engine_module, "RECLAIM_INTERVAL", 0.2)
    config = make_config(tmp_path, emulator, delivery=FAST)
    async with run_gateway(config) as gateway:
        queue_id = new_queue_id()
        envelope = Envelope(
            queue_id,
            "scanner@contoso.com",
            ("alice@contoso.com",),
            0.0,
            "loopback",
            "127.0.0.1",
            "lan",
            len(MESSAGE),
        )
        (config.spool.directory / "active" / f"{queue_id}.msg").write_bytes(
            encode(envelope, MESSAGE)
        )
        event = await gateway.next_event(timeout=10)
    assert (event.queue_id, event.result) == (queue_id, "delivered")
    [requeued] = logged("requeued")
    assert requeued["queue_id"] == queue_id


async def test_the_gateway_starts_and_delivers_beside_hostile_spool_entries(
    tmp_path: Path, emulator: Emulator, logged: Logged
) -> None:
    """A dangling link used to stop the start; a FIFO hung the workers so SIGTERM never ended."""
    config = make_config(tmp_path, emulator, delivery=FAST)
    queue = config.spool.directory / "queue"
    queue.mkdir(parents=True)
    real = new_queue_id()
    envelope = Envelope(
        real,
        "scanner@contoso.com",
        ("alice@contoso.com",),
        0.0,
        "loopback",
        "127.0.0.1",
        "lan",
        len(MESSAGE),
    )
    (queue / f"{real}.msg").write_bytes(encode(envelope, MESSAGE))
    (queue / f"{new_queue_id()}.msg").symlink_to(tmp_path / "gone")
    (queue / f"{new_queue_id()}.msg").symlink_to("/dev/zero")
    os.mkfifo(queue / f"{new_queue_id()}.msg")
    (queue / f"{new_queue_id()}.msg").mkdir()
    (queue / "not-a-queue-id.msg").write_bytes(encode(envelope, MESSAGE))
    async with run_gateway(config) as gateway:
        event = await gateway.next_event(timeout=10)
        assert (event.queue_id, event.result) == (real, "delivered")
    assert len(logged("spool_corrupt")) == 5
    assert len(list((config.spool.directory / "corrupt").iterdir())) == 5
    assert len(emulator.delivered()) == 1


async def test_the_started_line_tells_requeued_messages_from_those_already_waiting(
    tmp_path: Path, emulator: Emulator, logged: Logged
) -> None:
    """After a crash an administrator wants to know how many messages were being delivered
    (they may arrive twice) apart from those that were simply waiting."""
    config = make_config(tmp_path, emulator, delivery=FAST)
    spool = Spool(config.spool.directory)
    spool.open()
    stored = [
        spool.store(
            arrival(),
            MESSAGE,
        )
        for _ in range(3)
    ]
    assert spool.lease(stored[0]) is not None  # the process "dies" while delivering it
    spool.close()

    async with run_gateway(config) as gateway:
        await gateway.delivered(3)
    [started] = logged("started")
    assert (started["recovered"], started["requeued_from_active"], started["waiting"]) == (3, 1, 2)
