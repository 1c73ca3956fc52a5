"""Per-mailbox gates: Retry-After windows, pacing slots, at most N in flight (pure)."""

from __future__ import annotations

from gateway.delivery.mailboxes import Admit, MailboxGates, Queued, WaitUntil


def test_at_most_four_in_flight_and_waiters_come_back_in_order() -> None:
    gates = MailboxGates(max_in_flight=4, rate_per_minute=0)
    decisions = [gates.decide(f"m{i}", "Scanner@Contoso.com", 0.0) for i in range(6)]
    assert decisions[:4] == [Admit()] * 4
    assert decisions[4:] == [Queued(), Queued()]
    assert gates.in_flight("scanner@contoso.com") == 4
    assert gates.release("scanner@contoso.com") == "m4"
    assert gates.release("scanner@contoso.com") == "m5"
    assert gates.release("scanner@contoso.com") is None
    # Other mailboxes are not affected.
    assert gates.decide("x", "other@contoso.com", 0.0) == Admit()


def test_retry_after_blocks_the_mailbox_until_it_passes() -> None:
    gates = MailboxGates(max_in_flight=4, rate_per_minute=0)
    gates.block("a@contoso.com", 120.0)
    decision = gates.decide("m1", "a@contoso.com", 10.0)
    assert isinstance(decision, WaitUntil) and decision.when == 120.0
    assert gates.decide("m1", "a@contoso.com", 120.0) == Admit()


def test_pacing_lets_a_minute_hold_at_most_rate_messages() -> None:
    gates = MailboxGates(max_in_flight=100, rate_per_minute=3)
    waits = [gates.decide(f"m{i}", "erp@contoso.com", 0.0) for i in range(7)]
    assert waits[:3] == [Admit()] * 3  # a burst within the rate goes at once
    assert [w.when for w in waits[3:] if isinstance(w, WaitUntil)] == [60.0, 60.0, 60.0, 120.0]
    # A message coming back at its slot goes; one coming back early waits for the same slot.
    assert gates.decide("m3", "erp@contoso.com", 60.0) == Admit()
    early = gates.decide("m6", "erp@contoso.com", 90.0)
    assert isinstance(early, WaitUntil) and early.when == 120.0


def test_slots_follow_the_sends_of_the_last_minute() -> None:
    gates = MailboxGates(max_in_flight=100, rate_per_minute=2)
    assert gates.decide("a", "erp@contoso.com", 0.0) == Admit()
    assert gates.decide("b", "erp@contoso.com", 45.0) == Admit()
    third = gates.decide("c", "erp@contoso.com", 50.0)
    assert isinstance(third, WaitUntil) and third.when == 60.0  # a minute after the first
    fourth = gates.decide("d", "erp@contoso.com", 50.0)
    assert isinstance(fourth, WaitUntil) and fourth.when == 105.0  # a minute after the second
    # Long after, the mailbox has its whole minute again.
    assert gates.decide("e", "erp@contoso.com", 500.0) == Admit()
    assert gates.decide("f", "erp@contoso.com", 500.0) == Admit()


def test_any_minute_holds_at_most_the_rate() -> None:
    gates = MailboxGates(max_in_flight=1000, rate_per_minute=30)
    slots = []
    for i in range(500):
        decision = gates.decide(f"m{i}", "erp@c.com", i * 0.7)
        slots.append(i * 0.7 if decision == Admit() else decision.when)  # type: ignore[union-attr]
    assert slots == sorted(slots)  # in the order they came
    for start in slots:
        assert sum(start <= slot < start + 60.0 for slot in slots) <= 30


def test_burst_of_500_spreads_over_the_sending_limit() -> None:
    gates = MailboxGates(max_in_flight=4, rate_per_minute=30)
    last = max(
        (
            d.when
            for i in range(500)
            if isinstance(d := gates.decide(f"m{i}", "erp@c.com", 0.0), WaitUntil)
        ),
        default=0.0,
    )
    assert last == 16 * 60.0  # 500 messages at 30 a minute: 17 minutes, the last 20 in the 17th


def test_a_refused_request_gives_its_place_in_the_minute_back() -> None:
    gates = MailboxGates(max_in_flight=4, rate_per_minute=2)
    assert gates.decide("a", "erp@contoso.com", 0.0) == Admit()
    assert gates.decide("b", "erp@contoso.com", 1.0) == Admit()
    gates.settle("a", sent=False)  # Graph answered 503: nothing was sent
    gates.settle("b", sent=True)
    assert gates.decide("c", "erp@contoso.com", 2.0) == Admit()
    later = gates.decide("d", "erp@contoso.com", 2.0)
    assert isinstance(later, WaitUntil) and later.when == 61.0  # a minute after b
