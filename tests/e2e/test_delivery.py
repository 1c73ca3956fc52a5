"""Delivery under Graph's limits and failures: pacing, Retry-After, outages, holds and bounces."""

from __future__ import annotations

import asyncio
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.emulator import Emulator, EmulatorApp, EmulatorSettings, Faults, running_emulator
from tests.conftest import Logged
from tests.e2e.test_operations import HTTP, get, sample
from tests.e2e.test_pipeline import MESSAGE
from tests.support.gateway import SPOOL, config_document, make_config, run_gateway, write_config

pytestmark = pytest.mark.usefixtures("queue_backend")  # every test on both queue backends
FAST_RETRY = {"retry_initial": "1s", "retry_max": "2s", "concurrency": 8, "mailbox_rate": 0}


def numbered(index: int, sender: str = "scanner@contoso.com") -> bytes:
    return MESSAGE.replace(b"scan-0001", f"scan-{index:04d}".encode()).replace(
        b"scanner@contoso.com", sender.encode()
    )


async def send_many(gateway, count: int, sender: str = "scanner@contoso.com") -> None:
    async def one(index: int) -> None:
        assert await gateway.send(sender, ["alice@contoso.com"], numbered(index, sender)) == {}

    await asyncio.gather(*(one(index) for index in range(count)))


async def test_no_more_than_four_requests_per_mailbox_at_once(
    tmp_path: Path, emulator: Emulator
) -> None:
    emulator.set_faults(Faults(latency_ms=300))
    config = make_config(tmp_path, emulator, delivery=FAST_RETRY)
    async with run_gateway(config) as gateway:
        await send_many(gateway, 12)
        await gateway.delivered(12, timeout=30)
    assert emulator.stats.max_concurrency_by_mailbox["scanner@contoso.com"] == 4


async def test_retry_after_is_honoured_for_the_mailbox(tmp_path: Path, emulator: Emulator) -> None:
    emulator.set_faults(Faults(throttle_count=1, throttle_retry_after=2))
    config = make_config(tmp_path, emulator, delivery=FAST_RETRY)
    async with run_gateway(config) as gateway:
        assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], numbered(0)) == {}
        throttled = await gateway.next_event()
        assert (throttled.result, throttled.status) == ("deferred", 429)
        answered = len(emulator.stats.requests)
        await send_many(gateway, 3)
        await gateway.delivered(4, timeout=30)
    first = emulator.stats.requests[answered - 1]
    later = emulator.stats.requests[answered:]
    assert first.status == 429
    assert len(later) == 4
    assert min(r.time for r in later) - first.time >= 1.9  # nothing before Retry-After (2 s)


async def test_sending_rate_lets_a_minute_hold_the_rate(tmp_path: Path, emulator: Emulator) -> None:
    """mailbox_rate 4: a burst of four goes at once; the fifth and sixth wait for the minute."""
    config = make_config(tmp_path, emulator, delivery={**FAST_RETRY, "mailbox_rate": 4})
    async with run_gateway(config) as gateway:
        await send_many(gateway, 6)
        await gateway.delivered(4, timeout=30)
        first = min(r.time for r in emulator.stats.requests)
        await asyncio.sleep(3)  # nothing more within the minute
        times = sorted(r.time - first for r in emulator.stats.requests if r.status == 202)
        assert len(times) == 4 and times[-1] < 20, times
        waiting = await gateway.gateway.queue.entries()
    assert len(waiting) == 2


async def test_a_refused_request_does_not_count_against_the_minute(
    tmp_path: Path, emulator: Emulator
) -> None:
    """mailbox_rate 2 and a 429 for the first request: the two messages still go within
    seconds, since the refused request sent nothing (three requests, two sends)."""
    emulator.set_faults(Faults(throttle_count=1, throttle_retry_after=1))
    config = make_config(tmp_path, emulator, delivery={**FAST_RETRY, "mailbox_rate": 2})
    async with run_gateway(config) as gateway:
        await send_many(gateway, 2)
        await gateway.delivered(2, timeout=20)
    statuses = sorted(r.status for r in emulator.stats.requests)
    assert statuses == [202, 202, 429]


async def test_outage_is_invisible_to_smtp_clients(tmp_path: Path, emulator: Emulator) -> None:
    emulator.set_faults(Faults(outage_seconds=2.5))
    config = make_config(tmp_path, emulator, delivery=FAST_RETRY)
    async with run_gateway(config) as gateway:
        await send_many(gateway, 10)  # every one answered 250 during the outage
        await gateway.delivered(10, timeout=30)
    ids = {m.mime.split(b"Message-ID: <")[1].split(b">")[0] for m in emulator.delivered()}
    assert len(ids) == 10
    # The outage was met; messages that arrived once it was known waited for a probe instead
    # of each knocking on Graph (tests/e2e/test_outage_flush.py).
    assert emulator.stats.by_status.get(503, 0) >= 2


async def test_permanent_error_is_held_and_bounced_once(tmp_path: Path, emulator: Emulator) -> None:
    emulator.set_faults(Faults(mailbox_errors={"scanner@contoso.com": "ErrorSendAsDenied"}))
    delivery = {**FAST_RETRY, "postmaster": "postmaster@contoso.com"}
    async with run_gateway(make_config(tmp_path, emulator, delivery=delivery)) as gateway:
        assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE) == {}
        held = await gateway.next_event(accept=lambda e: e.result == "held")
        [notice] = await gateway.delivered(1)
        assert await gateway.gateway.queue.state_of(held.queue_id) == "hold"
    assert held.code == "ErrorSendAsDenied"
    [dsn] = emulator.delivered()
    assert dsn.mailbox == "postmaster@contoso.com"
    report = message_from_bytes(dsn.mime, policy=policy.default)
    assert report.get_content_type() == "multipart/report"
    assert report["To"] == "scanner@contoso.com"
    assert "ErrorSendAsDenied" in dsn.mime.decode(errors="replace")
    assert notice.queue_id != held.queue_id


async def test_failed_notification_is_never_bounced(
    tmp_path: Path, emulator: Emulator, logged: Logged
) -> None:
    # The postmaster mailbox itself is broken: its notification is held, and nothing loops.
    emulator.set_faults(
        Faults(
            mailbox_errors={
                "scanner@contoso.com": "ErrorSendAsDenied",
                "postmaster@contoso.com": "ErrorSendAsDenied",
            }
        )
    )
    delivery = {**FAST_RETRY, "postmaster": "postmaster@contoso.com"}
    async with run_gateway(make_config(tmp_path, emulator, delivery=delivery)) as gateway:
        assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE) == {}
        first = await gateway.next_event(accept=lambda e: e.result == "held")
        second = await gateway.next_event(accept=lambda e: e.result == "held")
        assert first.queue_id != second.queue_id
        held = [entry.queue_id for entry in await gateway.gateway.queue.entries("hold")]
        assert sorted(held) == sorted([first.queue_id, second.queue_id])
    # The held notification was not bounced in turn: nothing loops.
    bounces = logged("bounce")
    assert [line["sent"] for line in bounces] == [True, False]
    assert bounces[1]["reason"] == "null sender"  # a notification is sent from <>
    assert emulator.delivered() == []


async def test_message_past_its_lifetime_is_held_and_bounced(
    tmp_path: Path, emulator: Emulator
) -> None:
    emulator.set_faults(Faults(mailbox_errors={}, outage_seconds=60))
    delivery = {**FAST_RETRY, "max_queue_lifetime": "2s", "postmaster": "postmaster@contoso.com"}
    async with run_gateway(make_config(tmp_path, emulator, delivery=delivery)) as gateway:
        assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE) == {}
        held = await gateway.next_event(accept=lambda e: e.result == "held", timeout=30)
        emulator.set_faults(Faults())
        await gateway.delivered(1, timeout=30)  # the notification
        info = await gateway.gateway.queue.show(held.queue_id)
    assert info is not None and info["hold"]["expired"] is True
    [dsn] = emulator.delivered()
    assert b"Status: 4.4.7" in dsn.mime


async def test_queue_depth_limit_answers_452(tmp_path: Path, emulator: Emulator) -> None:
    emulator.set_faults(Faults(outage_seconds=60))
    config = make_config(
        tmp_path,
        emulator,
        delivery=FAST_RETRY,
        spool={**(SPOOL.get() or {"directory": str(tmp_path / "spool")}), "max_messages": 2},
    )
    async with run_gateway(config) as gateway:
        await send_many(gateway, 2)
        await gateway.gateway.queue.census()  # (a cluster counts its queue as it goes)

        def third(client):
            client.ehlo()
            return client.mail("scanner@contoso.com")

        code, text = await gateway.session(third)
        # Both still waiting or being tried. A listing is read folder by folder, so one that
        # moves between queue/ and active/ while it is read can be missed once: read again.
        counts = [len(await gateway.gateway.queue.entries()) for _ in range(3)]
        assert max(counts) == 2, counts
    assert (code, text[:5]) == (452, b"4.3.1")


async def test_failover_to_the_second_route_when_the_first_cannot_get_a_token(
    tmp_path: Path,
) -> None:
    good = EmulatorApp(
        tenant_id="contoso-tenant", client_id="backup-app", client_secret="right-secret"
    )
    broken = EmulatorApp(
        tenant_id="contoso-tenant",
        client_id="primary-app",
        client_secret="right-secret",
        secret_expired=True,
    )
    settings = EmulatorSettings(state_dir=tmp_path / "emu", apps=(good, broken))
    async with running_emulator(settings) as emulator:
        document = config_document(tmp_path, emulator, delivery=FAST_RETRY)
        primary = {
            **document["tenants"][0],
            "name": "primary",
            "client_id": "primary-app",
            "client_secret": "right-secret",
            "priority": 10,
        }
        backup = {**primary, "name": "backup", "client_id": "backup-app", "priority": 20}
        document["tenants"] = [primary, backup]
        config = load_config(write_config(tmp_path, document))
        async with run_gateway(config) as gateway:
            assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE) == {}
            [event] = await gateway.delivered(1)
        assert event.tenant == "backup"
        [delivered] = emulator.delivered()
        assert delivered.client_id == "backup-app"


async def test_client_send_as_delivers_from_the_shared_mailbox(
    tmp_path: Path, emulator: Emulator
) -> None:
    clients = [
        {
            "name": "printers",
            "networks": ["127.0.0.1"],
            "senders": ["*@contoso.com"],
            "send_as": "scanner-shared@contoso.com",
        }
    ]
    config = make_config(tmp_path, emulator, clients=clients, delivery=FAST_RETRY)
    device = MESSAGE.replace(
        b"From: Scanner <scanner@contoso.com>", b"From: MFP 3F <mfp3f@contoso.com>"
    )
    async with run_gateway(config) as gateway:
        assert await gateway.send("mfp3f@contoso.com", ["alice@contoso.com"], device) == {}
        await gateway.delivered(1)
    [delivered] = emulator.delivered()
    assert delivered.mailbox == "scanner-shared@contoso.com"
    parsed = message_from_bytes(delivered.mime, policy=policy.default)
    assert parsed["From"].addresses[0].addr_spec == "scanner-shared@contoso.com"
    assert parsed["From"].addresses[0].display_name == "MFP 3F"
    assert parsed["Reply-To"].addresses[0].addr_spec == "mfp3f@contoso.com"


async def test_two_tenants_each_message_uses_its_own_app(
    tmp_path: Path, emulator: Emulator
) -> None:
    document = config_document(tmp_path, emulator, delivery=FAST_RETRY)
    fabrikam = {
        **document["tenants"][0],
        "name": "fabrikam",
        "tenant_id": "fabrikam-tenant",
        "client_id": "fabrikam-app",
        "domains": ["fabrikam.com"],
    }
    document["tenants"].append(fabrikam)
    config = load_config(write_config(tmp_path, document))
    async with run_gateway(config) as gateway:
        assert await gateway.send("scanner@contoso.com", ["a@contoso.com"], MESSAGE) == {}
        assert await gateway.send("erp@fabrikam.com", ["a@contoso.com"], MESSAGE) == {}
        await gateway.delivered(2)
    used = {(m.mailbox, m.tenant_id, m.client_id) for m in emulator.delivered()}
    assert used == {
        ("scanner@contoso.com", "contoso-tenant", "contoso-app"),
        ("erp@fabrikam.com", "fabrikam-tenant", "fabrikam-app"),
    }
    assert emulator.stats.token_requests == 2


async def test_failover_when_graph_denies_the_first_app(tmp_path: Path) -> None:
    # The primary app never got admin consent: its token has no Mail.Send role and Graph
    # answers 403 ErrorAccessDenied; the backup route delivers at once.
    no_consent = EmulatorApp(
        tenant_id="contoso-tenant", client_id="primary-app", client_secret="right-secret", roles=()
    )
    good = EmulatorApp(
        tenant_id="contoso-tenant", client_id="backup-app", client_secret="right-secret"
    )
    settings = EmulatorSettings(state_dir=tmp_path / "emu", apps=(no_consent, good))
    async with running_emulator(settings) as emulator:
        document = config_document(tmp_path, emulator, delivery=FAST_RETRY)
        primary = {
            **document["tenants"][0],
            "name": "primary",
            "client_id": "primary-app",
            "client_secret": "right-secret",
            "priority": 1,
        }
        document["tenants"] = [
            primary,
            {**primary, "name": "backup", "client_id": "backup-app", "priority": 2},
        ]
        async with run_gateway(load_config(write_config(tmp_path, document))) as gateway:
            assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE) == {}
            [event] = await gateway.delivered(1)
        assert event.tenant == "backup"
        assert emulator.stats.by_status.get(403) == 1


SCANNERS = [f"scanner{n}@contoso.com" for n in range(4)]  # four mailboxes: no mailbox limit


async def send_scans(gateway) -> None:
    """One 1.5 MB message from each of SCANNERS, all at once."""
    padding = (b"x" * 998 + b"\r\n") * 1500
    await asyncio.gather(
        *(
            gateway.send(sender, ["alice@contoso.com"], numbered(n, sender) + padding)
            for n, sender in enumerate(SCANNERS)
        )
    )


@pytest.mark.parametrize(("budget", "at_once"), [("2MB", 1), (None, 4)])
async def test_large_messages_wait_for_room_in_memory(
    tmp_path: Path,
    emulator: Emulator,
    logged,
    budget: str | None,
    at_once: int,
    *,
    queue_backend: str,
) -> None:
    emulator.set_faults(Faults(latency_ms=400))  # long enough for all four to overlap
    delivery = FAST_RETRY if budget is None else {**FAST_RETRY, "max_bytes_in_flight": budget}
    config = make_config(tmp_path, emulator, delivery=delivery)
    async with run_gateway(config) as gateway:
        await send_scans(gateway)
        await gateway.delivered(4, timeout=30)
    assert sorted(m.mailbox for m in emulator.delivered()) == SCANNERS
    # 2 MB holds one 1.5 MB message at a time; the default (100 MB) lets all four go at once.
    assert emulator.stats.max_concurrency == at_once
    waits = logged("delivery_waits_for_memory")
    if queue_backend == "files":  # (a cluster node claims only what fits: nothing waits on it)
        assert bool(waits) is (budget is not None)
    if waits:
        assert waits[0]["max_bytes_in_flight"] == 2_000_000
        assert "delivery.max_bytes_in_flight" in waits[0]["action"]


async def test_metrics_show_what_waits_for_memory(
    tmp_path: Path, emulator: Emulator, queue_backend: str
) -> None:
    emulator.set_faults(Faults(latency_ms=400))
    delivery = {**FAST_RETRY, "max_bytes_in_flight": "2MB"}
    config = make_config(tmp_path, emulator, delivery=delivery, http=HTTP)
    prefix = "smtp_graph_gateway_delivery_"
    seen: list[list[float]] = []  # [in flight, bytes in flight, waiting] at each scrape
    async with run_gateway(config) as gateway:
        sending = asyncio.create_task(send_scans(gateway))
        for _ in range(4):  # a scrape as each scan is delivered, while the next is under way
            await gateway.next_event(timeout=30, accept=lambda e: e.result == "delivered")
            _status, text = await get(gateway, "/metrics")
            seen.append(
                [
                    sample(text, prefix + key)
                    for key in ("in_flight", "bytes_in_flight", "waiting_for_memory")
                ]
            )
        await sending
        _status, text = await get(gateway, "/metrics")
    assert max(busy for busy, _size, _waiting in seen) >= 1
    if queue_backend == "files":
        # (A cluster node claims only what fits: a message too big for the room left stays in
        # the database, unclaimed, rather than waiting on the node; so it waits there only
        # when a claim and a finishing delivery cross.)
        assert max(waiting for _busy, _size, waiting in seen) >= 1
    # Never more than the 2 MB budget: one 1.5 MB message at a time.
    assert 1_500_000 < max(size for _busy, size, _waiting in seen) < 2_000_000
    assert sample(text, prefix + "bytes_in_flight") == 0
    assert sample(text, prefix + "waiting_for_memory") == 0
