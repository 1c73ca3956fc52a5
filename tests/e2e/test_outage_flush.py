"""Recovery after a Graph outage, with the default retry settings (1 m doubling to 1 h): mail
deferred by the outage goes as soon as Graph is back, not when each message's backoff ends;
while the outage lasts, one probe per tenant per interval; a mailbox's own refusals release
nothing. (The outage is shortened; the retry settings are not.)"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest

from gateway.delivery.outages import DEFAULT_PROBE_INTERVAL
from gateway.emulator import Emulator, Faults
from tests.conftest import Logged
from tests.e2e.test_delivery import numbered
from tests.e2e.test_operations import HTTP, get, sample
from tests.support.gateway import make_config, run_gateway

OUTAGE = 25.0  # seconds: long enough for two probes
SENDERS = ("scanner@contoso.com", "printer@contoso.com", "erp@contoso.com")
DEFAULTS: dict[str, object] = {}  # the delivery section as shipped: every retry setting default


async def send(gateway, index: int) -> None:
    sender = SENDERS[index % len(SENDERS)]
    assert await gateway.send(sender, ["alice@contoso.com"], numbered(index, sender)) == {}


async def outage_found(gateway) -> None:
    """Two messages fail with 503 in a row: the tenant is in outage."""
    await send(gateway, 0)
    await send(gateway, 1)
    for _ in range(2):
        event = await gateway.next_event(accept=lambda e: e.result == "deferred")
        assert event.status == 503


@pytest.mark.usefixtures("queue_backend")
async def test_mail_deferred_by_an_outage_goes_as_soon_as_graph_is_back(
    tmp_path: Path, emulator: Emulator, logged: Logged
) -> None:
    config = make_config(tmp_path, emulator, delivery=DEFAULTS, http=HTTP)
    emulator.set_faults(Faults(outage_seconds=OUTAGE))
    outage_ends = time.time() + OUTAGE
    async with run_gateway(config) as gateway:
        await outage_found(gateway)
        detected = time.time()
        _, metrics = await get(gateway, "/metrics")
        assert sample(metrics, "smtp_graph_gateway_delivery_tenants_in_outage") == 1
        await asyncio.gather(*(send(gateway, index) for index in range(2, 12)))
        await gateway.delivered(12, timeout=OUTAGE + 40)
        _, metrics = await get(gateway, "/metrics")
    assert sample(metrics, "smtp_graph_gateway_delivery_tenants_in_outage") == 0
    assert sample(metrics, "smtp_graph_gateway_delivery_outage_probes_total") >= 1
    assert len(emulator.delivered()) == 12
    last = max(r.time for r in emulator.stats.requests if r.status == 202)
    # Found by the next probe (at most an interval after the end), then four messages per
    # mailbox at the default 30 a minute: ~6 s. Without the flush: a minute or more.
    assert last - outage_ends < DEFAULT_PROBE_INTERVAL + 10
    [ended] = logged("graph_outage_ended")
    assert ended["tenant"] == "contoso" and ended["flushed"] >= 10
    assert len(logged("graph_outage_detected")) == 1
    # While it lasted, after it was found: nothing but probes, an interval apart (new mail
    # waited untried, on one node in memory, in a cluster's database).
    during = [r.time for r in emulator.stats.requests if detected < r.time < outage_ends]
    assert 1 <= len(during) <= OUTAGE / DEFAULT_PROBE_INTERVAL
    assert all(b - a >= DEFAULT_PROBE_INTERVAL - 0.5 for a, b in itertools.pairwise(during))


async def test_a_restart_during_an_outage_tries_again_at_once(
    tmp_path: Path, emulator: Emulator, logged: Logged
) -> None:
    config = make_config(tmp_path, emulator, delivery=DEFAULTS)
    emulator.set_faults(Faults(outage_seconds=3600))
    async with run_gateway(config) as gateway:
        await outage_found(gateway)
        await send(gateway, 2)  # parked on arrival: the outage is known
        ids = [entry.queue_id for entry in await gateway.gateway.queue.entries("queue")]
        history = [await gateway.gateway.queue.attempts(queue_id) for queue_id in ids]
    # The deferrals say it was the tenant's outage, not the messages' fault.
    assert sorted(len(attempts) for attempts in history) == [0, 1, 1]
    assert [attempts[-1]["outage"] for attempts in history if attempts] == ["contoso"] * 2
    # `queue list` says why the second waits an hour on paper: it goes when the tenant answers.
    reasons = sorted(attempts[-1]["reason"] for attempts in history if attempts)
    assert reasons[0] == "Graph is busy or unavailable (HTTP 503)"  # the blip
    assert reasons[1].endswith("tenant contoso is in outage: it goes as soon as the tenant answers")
    emulator.set_faults(Faults())  # Graph is back while the gateway is down
    async with run_gateway(config) as gateway:
        # Their backoff (a minute or more) has not passed: the probe goes at once instead.
        await gateway.delivered(3, timeout=15)
    [suspected] = logged("graph_outage_suspected")
    assert suspected["waiting"] == 2
    assert logged("graph_outage_ended")[-1]["flushed"] == 2  # the probe, then the others


@pytest.mark.parametrize("queue_backend", ["postgresql"], indirect=True)
@pytest.mark.usefixtures("queue_backend")
async def test_a_cluster_restarted_during_an_outage_flushes_at_the_first_answer(
    tmp_path: Path, emulator: Emulator, logged: Logged
) -> None:
    # Every node stopped during the outage: nobody remembers it but the database, where the
    # deferred messages wait up to retry_max (1 h). The first answer after the start sends them.
    config = make_config(tmp_path, emulator, delivery=DEFAULTS)
    emulator.set_faults(Faults(outage_seconds=3600))
    async with run_gateway(config) as gateway:
        await outage_found(gateway)
    emulator.set_faults(Faults())
    async with run_gateway(config) as gateway:
        await send(gateway, 2)  # new mail: delivered, and the first answer flushes the others
        await gateway.delivered(3, timeout=15)
    assert logged("graph_outage_ended")[-1]["flushed"] == 2


async def test_a_mailbox_own_refusals_release_nothing(
    tmp_path: Path, emulator: Emulator, logged: Logged
) -> None:
    # scanner is throttled (429, Retry-After 300 s), erp may not send (403 ErrorAccessDenied);
    # printer's mail goes. Neither deferred message is tried again because of that.
    faults = Faults(
        throttle_count=1,
        throttle_retry_after=300,
        mailbox_errors={"erp@contoso.com": "ErrorAccessDenied"},
    )
    emulator.set_faults(faults)
    config = make_config(tmp_path, emulator, delivery=DEFAULTS)
    async with run_gateway(config) as gateway:
        await send(gateway, 0)  # scanner
        throttled = await gateway.next_event()
        await send(gateway, 2)  # erp
        refused = await gateway.next_event()
        await send(gateway, 1)  # printer
        await gateway.delivered(1)
        await asyncio.sleep(3)
    assert (throttled.result, throttled.status) == ("deferred", 429)
    assert (refused.result, refused.code) == ("deferred", "ErrorAccessDenied")
    by_mailbox = [r.mailbox for r in emulator.stats.requests if r.mailbox]
    assert by_mailbox.count("scanner@contoso.com") == 1
    assert by_mailbox.count("erp@contoso.com") == 1
    assert logged("graph_outage_detected") == []
    assert logged("graph_outage_ended") == []
