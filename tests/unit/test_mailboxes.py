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


def test_pacing_gives_each_message_its_own_slot() -> None:
    gates = MailboxGates(max_in_flight=100, rate_per_minute=30)  # one every 2 s
    waits = [gates.decide(f"m{i}", "erp@contoso.com", 0.0) for i in range(5)]
    assert waits[0] == Admit()
    assert [w.when for w in waits[1:] if isinstance(w, WaitUntil)] == [2.0, 4.0, 6.0, 8.0]
    # A message coming back at its slot goes; one coming back early waits for the same slot.
    assert gates.decide("m2", "erp@contoso.com", 4.0) == Admit()
    early = gates.decide("m3", "erp@contoso.com", 5.0)
    assert isinstance(early, WaitUntil) and early.when == 6.0


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
    assert last == 499 * 2.0  # 500 messages at 30 a minute take 16 minutes 38 seconds
