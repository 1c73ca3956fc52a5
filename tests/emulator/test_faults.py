"""Fault injection: latency, throttling, outages, refused mailboxes, concurrency accounting."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.emulator import Emulator, Faults
from gateway.emulator.cli import add_arguments, settings_from_args
from tests.emulator.conftest import StartEmulator
from tests.emulator.helpers import MAILBOX, bearer, get_token, graph_client, json_message


async def send(
    http: aiohttp.ClientSession, emulator: Emulator, token: str, mailbox: str = MAILBOX
) -> tuple[int, dict[str, Any] | None, Any]:
    async with http.post(
        f"{emulator.graph_endpoint}/users/{mailbox}/sendMail",
        json={"message": json_message()},
        headers=bearer(token),
    ) as response:
        body = await response.json() if response.status != 202 else None
        return response.status, body, response.headers


async def test_throttle_count_answers_429_with_retry_after(emulator: Emulator) -> None:
    emulator.set_faults(Faults(throttle_count=2, throttle_retry_after=7))
    async with graph_client(emulator) as http:
        token = await get_token(http, emulator)
        results = [await send(http, emulator, token) for _ in range(3)]

    assert [r[0] for r in results] == [429, 429, 202]
    _, body, headers = results[0]
    assert headers["Retry-After"] == "7"
    assert body is not None
    assert body["error"]["code"] == "ApplicationThrottled"
    assert body["error"]["message"] == "Application is over its MailboxConcurrency limit."
    assert len(emulator.delivered()) == 1
    assert emulator.stats.by_status == {429: 2, 202: 1}


async def test_throttle_rate_is_reproducible_with_a_seed(emulator: Emulator) -> None:
    async def statuses() -> list[int]:
        emulator.set_faults(Faults(throttle_rate=0.5, seed=42))
        return [(await send(http, emulator, token))[0] for _ in range(16)]

    async with graph_client(emulator) as http:
        token = await get_token(http, emulator)
        first, second = await statuses(), await statuses()

    assert first == second
    assert {429, 202} == set(first)


async def test_unavailable_count_and_rate(emulator: Emulator) -> None:
    async with graph_client(emulator) as http:
        token = await get_token(http, emulator)
        emulator.set_faults(Faults(unavailable_count=1, unavailable_retry_after=3))
        status, body, headers = await send(http, emulator, token)
        assert (status, headers["Retry-After"]) == (503, "3")
        assert body is not None and body["error"]["code"] == "ServiceUnavailable"
        assert (await send(http, emulator, token))[0] == 202
        emulator.set_faults(Faults(unavailable_rate=1.0))
        status, _, headers = await send(http, emulator, token)
        assert status == 503 and "Retry-After" not in headers


async def test_outage_lasts_its_seconds_from_when_it_is_set(emulator: Emulator) -> None:
    async with graph_client(emulator) as http:
        token = await get_token(http, emulator)
        emulator.set_faults(Faults(outage_seconds=0.4))
        assert (await send(http, emulator, token))[0] == 503
        assert (await send(http, emulator, token))[0] == 503
        await asyncio.sleep(0.45)
        assert (await send(http, emulator, token))[0] == 202


async def test_latency_delays_graph_but_not_login(emulator: Emulator) -> None:
    emulator.set_faults(Faults(latency_ms=400))
    async with graph_client(emulator) as http:
        started = time.monotonic()
        token = await get_token(http, emulator)
        login_time = time.monotonic() - started
        started = time.monotonic()
        assert (await send(http, emulator, token))[0] == 202
        graph_time = time.monotonic() - started
    assert graph_time >= 0.4
    assert login_time < 0.4


@pytest.mark.parametrize(
    ("code", "status", "message", "refuses_drafts"),
    [
        ("ErrorAccessDenied", 403, "Access to OData is disabled.", True),
        (
            "MailboxNotEnabledForRESTAPI",
            404,
            "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
            True,
        ),
        ("ErrorSendAsDenied", 403, "does not have the right to send mail on behalf of", False),
        ("ErrorInvalidRecipients", 400, "At least one recipient is not valid.", False),
        ("ErrorMessageSizeExceeded", 400, "The message exceeds the maximum supported size.", False),
    ],
)
async def test_mailbox_errors(
    start_emulator: StartEmulator, code: str, status: int, message: str, refuses_drafts: bool
) -> None:
    emulator = await start_emulator(faults=Faults(mailbox_errors={"Scanner@Contoso.com": code}))
    async with graph_client(emulator) as http:
        token = await get_token(http, emulator)
        got, body, _ = await send(http, emulator, token)
        assert (got, body and body["error"]["code"]) == (status, code)
        assert body is not None and message in body["error"]["message"]
        assert (await send(http, emulator, token, mailbox="other@contoso.com"))[0] == 202
        async with http.post(
            f"{emulator.graph_endpoint}/users/{MAILBOX}/messages",
            json=json_message(),
            headers=bearer(token),
        ) as response:
            assert (response.status != 201) is refuses_drafts
    assert [m.mailbox for m in emulator.delivered()] == ["other@contoso.com"]


async def test_concurrency_per_mailbox_is_recorded_and_can_be_limited(
    emulator: Emulator,
) -> None:
    emulator.set_faults(Faults(latency_ms=600))  # long enough for every request to be in flight
    async with graph_client(emulator) as http:
        token = await get_token(http, emulator)
        await asyncio.gather(
            *(send(http, emulator, token) for _ in range(6)),
            *(send(http, emulator, token, mailbox="other@contoso.com") for _ in range(2)),
        )
        assert emulator.stats.max_concurrency_by_mailbox == {MAILBOX: 6, "other@contoso.com": 2}
        assert emulator.stats.max_concurrency == 8
        emulator.set_faults(Faults(latency_ms=600, concurrency_limit=4))
        results = await asyncio.gather(*(send(http, emulator, token) for _ in range(6)))
    assert sorted(r[0] for r in results) == [202, 202, 202, 202, 429, 429]
    assert emulator.stats.graph_requests == 14
    assert [r.mailbox for r in emulator.stats.requests].count("other@contoso.com") == 2


def test_faults_are_validated() -> None:
    with pytest.raises(ValueError, match="throttle_rate must be between 0 and 1"):
        Faults(throttle_rate=1.5)
    with pytest.raises(ValueError, match="unknown code 'ErrorNope'"):
        Faults(mailbox_errors={"a@b.c": "ErrorNope"})
    with pytest.raises(ValueError, match="unknown fault setting"):
        Faults.from_mapping({"throtle_count": 1})
    with pytest.raises(TypeError, match="throttle_count must be an integer"):
        Faults.from_mapping({"throttle_count": "2"})


def test_faults_file_and_flags_combine(tmp_path: Path) -> None:
    faults_file = tmp_path / "faults.yaml"
    faults_file.write_text(
        yaml.safe_dump(
            {
                "throttle_count": 3,
                "latency_ms": 10,
                "mailbox_errors": {"printer@contoso.com": "ErrorSendAsDenied"},
            }
        )
    )
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--faults",
            str(faults_file),
            "--latency",
            "50",
            "--throttle-rate",
            "0.25",
            "--unavailable-rate",
            "0.1",
            "--throttle-retry-after",
            "9",
            "--state-dir",
            str(tmp_path),
        ]
    )

    faults = settings_from_args(args).faults

    assert (faults.throttle_count, faults.latency_ms, faults.throttle_rate) == (3, 50, 0.25)
    assert (faults.unavailable_rate, faults.throttle_retry_after) == (0.1, 9)
    assert faults.mailbox_errors == {"printer@contoso.com": "ErrorSendAsDenied"}
