"""Delivery outcomes per minute for the console's charts, and the SVG they are drawn as."""

from __future__ import annotations

from gateway.console.charts import bars
from gateway.delivery.events import DeliveryEvent
from gateway.observability.activity import Activity


class Clock:
    def __init__(self) -> None:
        self.now = 1_780_000_020.0

    def __call__(self) -> float:
        return self.now


def test_outcomes_land_in_their_minute_and_hour() -> None:
    clock = Clock()
    activity = Activity(clock)
    activity.record(DeliveryEvent("A", "delivered"))
    activity.record(DeliveryEvent("B", "deferred"))
    clock.now += 60
    activity.record(DeliveryEvent("C", "delivered"))
    activity.record(DeliveryEvent("D", "split"))  # not an outcome the charts show
    clock.now += 3 * 3600  # three hours later: out of the hour, still in the day
    activity.record(DeliveryEvent("E", "held"))
    charts = activity.charts()
    assert len(charts["hour"]) == 60 and len(charts["day"]) == 24
    assert charts["hour"][-1] == {"delivered": 0, "deferred": 0, "held": 1}
    assert sum(b["delivered"] for b in charts["hour"]) == 0
    day = charts["day"]
    assert sum(b["delivered"] for b in day) == 2 and sum(b["deferred"] for b in day) == 1
    assert day[-1]["held"] == 1
    clock.now += 25 * 3600
    assert all(sum(b.values()) == 0 for b in activity.charts()["day"])


def test_the_chart_is_an_accessible_svg_with_totals() -> None:
    series = [
        {"delivered": 3, "deferred": 1, "held": 0},
        {"delivered": 0, "deferred": 0, "held": 2},
    ]
    svg = bars("Last hour", series, "minute", "chart-hour")
    assert 'aria-label="Last hour: delivered 3, deferred 1, held 2"' in svg
    assert svg.count("<rect x=") == 3  # one per non-zero outcome per bar
    assert "<script" not in svg and "style=" not in svg
