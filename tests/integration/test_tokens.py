"""Real msal against the emulator over HTTPS, with the system CA bundle set in the environment."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.config import Secret, Tenant
from gateway.emulator import Emulator, EmulatorApp, EmulatorSettings, running_emulator
from gateway.entra.tokens import TokenProvider
from gateway.errors import TokenError

TENANT_ID = "11111111-2222-3333-4444-555555555555"
APP = EmulatorApp(tenant_id=TENANT_ID, client_id="app-1", client_secret="right-secret")
EXPIRED = EmulatorApp(
    tenant_id=TENANT_ID, client_id="app-2", client_secret="old-secret", secret_expired=True
)


@pytest.fixture(autouse=True)
def _system_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")


@pytest.fixture
async def registered(tmp_path: Path) -> AsyncIterator[Emulator]:
    settings = EmulatorSettings(state_dir=tmp_path / "emu", apps=(APP, EXPIRED))
    async with running_emulator(settings) as emulator:
        yield emulator


def tenant(
    emulator: Emulator,
    *,
    tenant_id: str = TENANT_ID,
    client_id: str = "app-1",
    secret: str = "right-secret",
) -> Tenant:
    return Tenant(
        name="contoso",
        tenant_id=tenant_id,
        client_id=client_id,
        client_secret=Secret(secret),
        domains=("contoso.com",),
        login_endpoint=emulator.login_endpoint,
        graph_endpoint=emulator.graph_endpoint,
        ca_file=emulator.ca_file,
    )


async def test_token_is_fetched_once_and_reused_under_concurrency(registered: Emulator) -> None:
    provider = TokenProvider(tenant(registered), timeout=10)
    tokens = await asyncio.gather(*(provider.get() for _ in range(50)))
    assert len(set(tokens)) == 1
    assert tokens[0].count(".") == 2  # a JWT from the emulator
    assert registered.stats.token_requests == 1
    assert provider.fetches == 1
    provider.close()


async def test_token_with_less_than_five_minutes_left_is_replaced(tmp_path: Path) -> None:
    # Entra normally issues ~1 h tokens; one issued for exactly 5 minutes is already due.
    settings = EmulatorSettings(state_dir=tmp_path / "emu", apps=(APP,), token_lifetime=300)
    async with running_emulator(settings) as emulator:
        provider = TokenProvider(tenant(emulator), timeout=10)
        first = await provider.get()
        second = await provider.get()
        assert emulator.stats.token_requests == 2
        assert first != second
        provider.close()


@pytest.mark.parametrize(
    ("kwargs", "code", "words"),
    [
        ({"secret": "Wr0ngSecretValue"}, "AADSTS7000215", "Value, not its Secret ID"),
        ({"client_id": "app-2", "secret": "old-secret"}, "AADSTS7000222", "expired"),
        ({"client_id": "nobody"}, "AADSTS700016", "no app with this client_id"),
        (
            {"tenant_id": "99999999-0000-0000-0000-000000000000"},
            "AADSTS90002",
            "tenant was not found",
        ),
    ],
)
async def test_entra_errors_are_explained(
    registered: Emulator, kwargs: dict[str, str], code: str, words: str
) -> None:
    provider = TokenProvider(tenant(registered, **kwargs), timeout=10)
    with pytest.raises(TokenError) as caught:
        await provider.get()
    assert caught.value.code == code
    assert words in caught.value.reason
    assert "Wr0ngSecretValue" not in caught.value.reason
    assert "old-secret" not in caught.value.reason
    assert caught.value.credentials  # a credential problem: deferred, never bounced
    provider.close()


async def test_unreachable_login_endpoint_is_a_token_error(tmp_path: Path) -> None:
    settings = EmulatorSettings(state_dir=tmp_path / "emu")
    async with running_emulator(settings) as emulator:
        dead = Tenant(
            name="x",
            tenant_id="t",
            client_id="c",
            client_secret=Secret("s"),
            domains=("x.com",),
            login_endpoint="https://127.0.0.1:9",
            ca_file=emulator.ca_file,
        )
    provider = TokenProvider(dead, timeout=5)
    with pytest.raises(TokenError, match="tenant x"):
        await provider.get()
    provider.close()
