"""Fixtures: start emulators with chosen settings; each is stopped when the test ends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from gateway.emulator import Emulator, EmulatorApp, EmulatorSettings, running_emulator
from tests.emulator.helpers import CLIENT, SECRET, TENANT

StartEmulator = Callable[..., Awaitable[Emulator]]


@pytest.fixture
async def start_emulator(tmp_path: Path) -> AsyncIterator[StartEmulator]:
    """`await start_emulator(apps=..., faults=...)` → a running emulator on 127.0.0.1:0."""
    started = 0
    async with AsyncExitStack() as stack:

        async def start(**overrides: Any) -> Emulator:
            nonlocal started
            started += 1
            settings = EmulatorSettings(
                host="127.0.0.1", port=0, state_dir=tmp_path / f"emulator-{started}", **overrides
            )
            return await stack.enter_async_context(running_emulator(settings))

        yield start


@pytest.fixture
async def registered(start_emulator: StartEmulator) -> Emulator:
    """An emulator that knows one app (secret; Mail.Send and Mail.ReadWrite consented)."""
    app = EmulatorApp(TENANT, CLIENT, SECRET, roles=("Mail.Send", "Mail.ReadWrite"))
    return await start_emulator(apps=(app,))
