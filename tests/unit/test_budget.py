"""The delivery size budget: bytes of mail in delivery at once (pure)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.delivery.budget import SMALL, SizeBudget

MB = 1_000_000


def test_messages_go_together_while_their_sizes_fit() -> None:
    budget = SizeBudget(100 * MB)
    assert budget.take("a", 30 * MB)
    assert budget.take("b", 30 * MB)
    assert budget.take("c", 40 * MB)
    assert budget.used == 100 * MB
    assert not budget.take("d", SMALL + 1)  # not one counted message more
    assert budget.waiting == 1


def test_a_message_larger_than_the_limit_goes_alone() -> None:
    budget = SizeBudget(100 * MB)
    assert budget.take("huge", 150 * MB)  # nothing else in delivery: it must be able to go
    assert not budget.take("scan", 2 * MB)
    assert budget.give_back("huge") == ["scan"]
    assert budget.take("scan", 2 * MB)  # its room was reserved when it was handed back


def test_small_messages_never_wait_and_are_not_counted() -> None:
    budget = SizeBudget(100 * MB)
    assert budget.take("huge", 150 * MB)
    assert not budget.take("scan", 2 * MB)
    assert all(budget.take(f"text{n}", SMALL) for n in range(100))  # not behind the scans
    assert budget.used == 150 * MB and budget.waiting == 1
    assert budget.give_back("text0") == []


def test_the_line_is_first_come_first_served_and_small_mail_cannot_jump_it() -> None:
    budget = SizeBudget(100 * MB)
    assert budget.take("a", 60 * MB)
    assert not budget.take("big", 80 * MB)
    # 30 MB would fit beside "a", but "big" waits first: otherwise a stream of small messages
    # could keep it waiting for ever.
    assert not budget.take("small", 30 * MB)
    assert not budget.take("small", 30 * MB)  # asking again does not queue it twice
    assert budget.waiting == 2
    assert budget.give_back("a") == ["big"]  # 80 MB reserved; 30 more would not fit
    assert budget.used == 80 * MB
    assert budget.take("big", 80 * MB)
    assert budget.give_back("big") == ["small"]
    assert budget.used == 30 * MB and budget.waiting == 0


def test_reserved_room_goes_to_the_next_when_its_message_cannot_use_it() -> None:
    budget = SizeBudget(100 * MB)
    assert budget.take("a", 90 * MB)
    assert not budget.take("b", 50 * MB)
    assert not budget.take("c", 50 * MB)
    assert budget.give_back("a") == ["b", "c"]  # both fit now, both reserved
    # "b" was handed back but its mailbox is throttled: it gives its reservation up.
    assert budget.give_back("b") == []
    assert budget.used == 50 * MB
    assert budget.take("c", 50 * MB)


def test_a_message_that_leaves_the_line_is_forgotten() -> None:
    budget = SizeBudget(100 * MB)
    assert budget.take("a", 90 * MB)
    assert not budget.take("deleted", 50 * MB)
    assert not budget.take("next", 5 * MB)
    assert budget.give_back("deleted") == ["next"]  # an administrator deleted it meanwhile
    assert budget.waiting == 0
    assert budget.give_back("never-seen") == []
    assert budget.used == 95 * MB


def test_a_larger_limit_lets_waiting_messages_go_at_once() -> None:
    budget = SizeBudget(100 * MB)
    assert budget.take("a", 90 * MB)
    assert not budget.take("b", 50 * MB)
    assert budget.resize(200 * MB) == ["b"]  # a configuration reload
    assert budget.take("b", 50 * MB)
    assert budget.resize(10 * MB) == []  # smaller: what is in delivery carries on
    assert budget.used == 140 * MB


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["take", "back"]),
            st.integers(0, 9),
            st.integers(0, 150).map(lambda mb: mb * MB),  # 0 stands for a small message
        ),
        max_size=60,
    )
)
def test_never_over_the_limit_except_one_alone_and_everything_gets_its_turn(
    steps: list[tuple[str, int, int]],
) -> None:
    budget = SizeBudget(100 * MB)
    sizes: dict[str, int] = {}
    going: set[str] = set()
    handed_back: set[str] = set()
    for action, number, first_size in steps:
        queue_id = f"m{number}"
        if action == "take":
            if budget.take(queue_id, sizes.setdefault(queue_id, first_size)):
                going.add(queue_id)
                handed_back.discard(queue_id)
        else:
            going.discard(queue_id)
            handed_back.discard(queue_id)
            handed_back.update(budget.give_back(queue_id))
        counted = {q for q in going | handed_back if sizes[q] > SMALL}
        assert sum(sizes[q] for q in going if sizes[q] > SMALL) <= budget.used
        assert budget.used <= 100 * MB or len(counted) <= 1
    # Drain: as deliveries finish, every waiting message is handed back in the end.
    while going or handed_back:
        for queue_id in list(going) + list(handed_back):
            going.discard(queue_id)
            handed_back.discard(queue_id)
            handed_back.update(budget.give_back(queue_id))
    assert budget.waiting == 0
    assert budget.used == 0
