"""Outages of a tenant: when messages are parked, which one probes and when, what a flush
releases (the pure state; the engine's use of it is in tests/e2e/test_outage_flush.py), and
which failures are the service's rather than the message's."""

from __future__ import annotations

import pytest

from gateway.config import Secret, Tenant
from gateway.delivery.attempt import Failed, Tried, not_the_message
from gateway.delivery.outages import Failure, Outages
from gateway.graph.classify import classify
from gateway.queue.model import Envelope, QueuedMessage
from gateway.routing import Route
from gateway.transport import Answer, Submission, Verdict


def begin(outages: Outages, tenant: str = "contoso", *, now: float = 1.0) -> None:
    """Two failures in a row: `blip` (waiting its backoff) and `a` start the outage."""
    assert outages.failed(tenant, "blip", started=now - 1.0, now=now - 0.5) is Failure.BLIP
    assert outages.failed(tenant, "a", started=now - 0.5, now=now) is Failure.BEGAN
    outages.forget("blip", now)  # (most tests follow one message)


def test_two_failures_in_a_row_start_an_outage() -> None:
    outages = Outages(10.0)
    assert outages.failed("contoso", "a", started=0.0, now=1.0) is Failure.BLIP
    assert outages.tenants == []
    assert not outages.parked("a")
    assert outages.failed("contoso", "b", started=0.5, now=1.2) is Failure.BEGAN
    assert outages.failed("contoso", "c", started=0.5, now=1.3) is Failure.CONTINUES
    assert outages.tenants == ["contoso"]
    # The blip waited its backoff; now it waits for the end of the outage with the others.
    assert outages.parked("a") and outages.parked("b") and outages.parked("c")
    assert outages.waiting("contoso") == 3


def test_one_message_failing_twice_is_two_in_a_row() -> None:
    outages = Outages(10.0)
    assert outages.failed("contoso", "a", started=0.0, now=1.0) is Failure.BLIP
    assert outages.failed("contoso", "a", started=60.0, now=61.0) is Failure.BEGAN


def test_an_answer_between_two_failures_means_no_outage() -> None:
    outages = Outages(10.0)
    assert outages.failed("contoso", "a", started=0.0, now=1.0) is Failure.BLIP
    assert outages.answered("contoso", now=2.0) is None
    assert outages.failed("contoso", "b", started=3.0, now=4.0) is Failure.BLIP
    assert outages.tenants == []


def test_a_failure_while_others_were_answered_is_the_message_own() -> None:
    # Graph answered another message of the tenant after this attempt began: Graph works,
    # so a 503 is this mailbox's (its own backoff), not an outage that parks everyone.
    outages = Outages(10.0)
    outages.answered("contoso", now=5.0)
    assert outages.failed("contoso", "a", started=4.0, now=6.0) is Failure.OWN
    assert outages.tenants == []
    assert not outages.parked("a")


def test_tenants_are_independent() -> None:
    outages = Outages(10.0)
    begin(outages)
    assert not outages.hold_back("fabrikam", "x", now=2.0)
    assert outages.answered("fabrikam", now=2.0) is None
    assert outages.tenants == ["contoso"]


def test_one_probe_per_interval_while_the_outage_lasts() -> None:
    outages = Outages(10.0)
    begin(outages)
    # New mail and messages whose backoff ends are parked, not sent.
    assert outages.hold_back("contoso", "b", now=2.0)
    assert outages.take_probe("contoso", now=10.9) is None  # not before the interval
    assert outages.next_probe("contoso") == 11.0
    assert outages.take_probe("contoso", now=11.0) == "a"  # the oldest parked goes
    assert outages.next_probe("contoso") is None  # one probe at a time
    assert outages.take_probe("contoso", now=30.0) is None
    assert outages.hold_back("contoso", "c", now=30.0)  # others still wait
    assert outages.hold_back("contoso", "a", now=30.0) is False  # the probe itself goes
    # The probe fails: the next one no sooner than an interval after that.
    assert outages.failed("contoso", "a", started=11.0, now=12.0) is Failure.CONTINUES
    assert outages.next_probe("contoso") == 22.0
    assert outages.take_probe("contoso", now=21.0) is None
    assert outages.take_probe("contoso", now=22.0) == "b"
    assert outages.probes_total == 2


def test_a_due_message_becomes_the_probe_when_none_is_parked() -> None:
    outages = Outages(10.0)
    begin(outages)
    outages.forget("a", now=2.0)  # delivered by hand, deleted: nothing parked
    assert outages.take_probe("contoso", now=20.0) is None
    assert outages.hold_back("contoso", "new", now=20.0) is False  # it goes, as the probe
    assert outages.hold_back("contoso", "other", now=20.0) is True


def test_the_first_answer_ends_the_outage_and_flushes_the_parked() -> None:
    outages = Outages(10.0)
    begin(outages)
    outages.hold_back("contoso", "b", now=2.0)
    outages.hold_back("contoso", "c", now=3.0)
    assert outages.take_probe("contoso", now=11.0) == "a"
    ended = outages.answered("contoso", now=12.0)
    assert ended is not None
    assert ended.flush == ("b", "c")  # the probe itself was answered
    assert ended.duration == 11.0
    assert outages.tenants == []
    assert not outages.parked("b")
    assert outages.hold_back("contoso", "d", now=12.5) is False


def test_a_probe_that_leaves_the_queue_passes_its_turn_at_once() -> None:
    outages = Outages(10.0)
    begin(outages)
    outages.hold_back("contoso", "b", now=2.0)
    assert outages.take_probe("contoso", now=11.0) == "a"
    assert outages.forget("a", now=11.5) == "contoso"
    assert outages.take_probe("contoso", now=11.5) == "b"


def test_a_message_asked_for_now_is_the_next_probe_at_once() -> None:
    outages = Outages(10.0)
    begin(outages)
    outages.hold_back("contoso", "b", now=2.0)
    outages.hold_back("contoso", "c", now=3.0)
    assert outages.hurry("c", now=4.0) == "contoso"  # `queue retry c`
    assert outages.take_probe("contoso", now=4.0) == "c"
    assert outages.hurry("b", now=4.5) == "contoso"  # after the probe under way
    assert outages.take_probe("contoso", now=4.5) is None
    outages.failed("contoso", "c", started=4.0, now=5.0)
    assert outages.take_probe("contoso", now=15.0) == "b"
    assert outages.hurry("unknown", now=16.0) is None


def test_after_a_restart_suspected_messages_probe_at_once() -> None:
    outages = Outages(10.0)
    assert outages.suspect("contoso", "a", now=100.0) is True
    assert outages.suspect("contoso", "b", now=100.0) is False
    assert outages.take_probe("contoso", now=100.0) == "a"
    assert outages.parked("b")
    ended = outages.answered("contoso", now=101.0)
    assert ended is not None and ended.flush == ("b",)


def test_a_cluster_probe_is_counted_and_paced() -> None:
    outages = Outages(10.0)
    begin(outages)
    outages.probed("contoso", now=11.0)
    assert outages.next_probe("contoso") == 21.0
    outages.drop("contoso")
    assert outages.tenants == [] and not outages.parked("a")


# -- which failures are the service's, not the message's ---------------------------------------

TENANT = Tenant(
    name="contoso",
    tenant_id="t",
    client_id="c",
    client_secret=Secret("s"),
    domains=("contoso.com",),
)
ROUTE = Route(TENANT, "scanner@contoso.com")
QUEUED = QueuedMessage(
    Envelope("ID", "scanner@contoso.com", ("alice@contoso.com",), 0.0, "c", "p", "l", 1), b"x"
)


def graph(status: int, code: str = "") -> Tried:
    answer = Answer(status, code)
    return Tried(QUEUED, 1, ROUTE, Submission(answer, classify(status, code).verdict, "mime"))


@pytest.mark.parametrize(
    ("outcome", "outage"),
    [
        (graph(503, "ServiceUnavailable"), True),
        (graph(500), True),
        (graph(504), True),
        (graph(408), True),
        (Failed(QUEUED, 1, "Graph did not answer within 60s", ROUTE), True),  # timeout
        (Failed(QUEUED, 1, "cannot connect", ROUTE), True),
        (graph(202), False),
        (graph(429, "ApplicationThrottled"), False),  # the mailbox's: Retry-After
        (graph(403, "ErrorAccessDenied"), False),  # a set-up problem
        (graph(404, "MailboxNotEnabledForRESTAPI"), False),
        (graph(400, "ErrorInvalidRecipients"), False),
        (Failed(QUEUED, 1, "no token", ROUTE, configuration=True), False),
        (Failed(QUEUED, 1, "no tenant serves it", configuration=True), False),
        (Tried(QUEUED, 1, ROUTE, Submission(Answer(421), Verdict(), "smtp")), True),
        (Tried(QUEUED, 1, ROUTE, Submission(Answer(452), Verdict(), "smtp")), False),
    ],
)
def test_what_is_not_the_message_fault(outcome: Tried | Failed, outage: bool) -> None:
    assert not_the_message(outcome) is outage
