"""Shared fixtures: a running Graph/Entra emulator over HTTPS and structlog reset."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import structlog

from gateway.emulator import Emulator, EmulatorSettings, running_emulator


@pytest.fixture(autouse=True)
def _reset_structlog() -> None:
    structlog.reset_defaults()


@pytest.fixture
async def emulator(tmp_path: Path) -> AsyncIterator[Emulator]:
    settings = EmulatorSettings(host="127.0.0.1", port=0, state_dir=tmp_path / "emulator")
    async with running_emulator(settings) as running:
        yield running
