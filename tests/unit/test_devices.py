"""The device registry: counts per day, the silent flag, failures matched by queue ID, and
the file that keeps it across restarts."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.delivery.events import DeliveryEvent
from gateway.observability.devices import DeviceRegistry

DAY = 86400.0
START = 1_780_000_000.0  # a Tuesday noon-ish, UTC


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def test_a_device_that_sent_daily_and_stopped_is_silent() -> None:
    clock = Clock()
    registry = DeviceRegistry(None, silent_after=DAY, clock=clock)
    for day in range(5):
        registry.accepted("10.0.0.7", "", "printers", f"ID{day}")
        clock.now += DAY
    clock.now -= DAY / 2  # half a day after the last message: not yet
    assert registry.silent_count() == 0
    clock.now += DAY  # a day and a half: silent
    assert registry.silent_count() == 1
    [row] = registry.listing()
    assert row["silent"] and row["client"] == "printers" and row["week"] == 5
    registry.accepted("10.0.0.7", "", "printers", "ID9")  # it is back
    assert registry.silent_count() == 0


def test_an_occasional_sender_is_never_silent() -> None:
    clock = Clock()
    registry = DeviceRegistry(None, silent_after=DAY, clock=clock)
    registry.accepted("10.0.0.8", "erp", "", "ID1")
    clock.now += 30 * DAY
    assert registry.silent_count() == 0


def test_refusals_and_delivery_failures_are_remembered() -> None:
    clock = Clock()
    registry = DeviceRegistry(None, clock=clock)
    registry.refused("10.0.0.9", "", "", "address is in no client's networks", 554)
    registry.accepted("10.0.0.7", "scan", "printers", "AAA")
    registry.delivery(DeliveryEvent("AAA", "held", 403, "ErrorSendAsDenied", "no Send As"))
    registry.delivery(DeliveryEvent("BBB", "held", 403, "ErrorSendAsDenied", "someone else's"))
    rows = {row["address"]: row for row in registry.listing()}
    assert rows["10.0.0.9"]["last_refusal"]["reply"] == 554
    assert rows["10.0.0.9"]["today"] == 0
    failure = rows["10.0.0.7"]["last_failure"]
    assert (failure["code"], failure["queue_id"]) == ("ErrorSendAsDenied", "AAA")
    assert rows["10.0.0.7"]["user"] == "scan"


def test_kept_across_restarts_and_a_broken_file_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    clock = Clock()
    first = DeviceRegistry(path, clock=clock)
    first.accepted("10.0.0.7", "", "printers", "AAA")
    first.close()
    second = DeviceRegistry(path, clock=clock)
    second.load()
    [row] = second.listing()
    assert (row["address"], row["today"]) == ("10.0.0.7", 1)
    path.write_text("{not json")
    third = DeviceRegistry(path, clock=clock)
    third.load()
    assert third.listing() == []
    assert (tmp_path / "devices.broken").read_text() == "{not json"
    path.write_text(json.dumps({"devices": [{"address": "x", "unknown": 1}]}))
    fourth = DeviceRegistry(path, clock=clock)
    fourth.load()
    assert fourth.listing() == []
