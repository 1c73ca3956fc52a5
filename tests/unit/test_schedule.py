"""The delivery timetable hands out due IDs in order and wakes waiting workers."""

from __future__ import annotations

import asyncio

import pytest

from gateway.delivery.schedule import Schedule, ScheduleClosedError


async def test_due_items_come_out_earliest_first() -> None:
    schedule = Schedule()
    schedule.add("later", 0.05)
    schedule.add("now-1")
    schedule.add("now-2")
    assert [await schedule.next(), await schedule.next()] == ["now-1", "now-2"]
    assert await asyncio.wait_for(schedule.next(), 2) == "later"


async def test_waiting_worker_wakes_for_new_item() -> None:
    schedule = Schedule()
    waiter = asyncio.create_task(schedule.next())
    await asyncio.sleep(0)
    assert not waiter.done()
    schedule.add("fresh")
    assert await asyncio.wait_for(waiter, 2) == "fresh"


async def test_close_releases_every_waiter() -> None:
    schedule = Schedule()
    waiters = [asyncio.create_task(schedule.next()) for _ in range(3)]
    await asyncio.sleep(0)
    schedule.close()
    for waiter in waiters:
        with pytest.raises(ScheduleClosedError):
            await asyncio.wait_for(waiter, 2)
