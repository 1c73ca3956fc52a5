"""Shared fixtures: a running Graph/Entra emulator over HTTPS and structlog reset."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from gateway.emulator import Emulator, EmulatorSettings, running_emulator
from gateway.observability.logging import configure_logging, flush_logs
from tests.support.gateway import SPOOL
from tests.support.postgres import cluster_spool, pg_dsn, pg_server

__all__ = ["pg_dsn", "pg_server"]  # fixtures for every test module

# Every secret value and the shape of every token the tests use: none may ever be logged.
SECRETS = (
    "contoso-secret",
    "right-secret",
    "old-secret",
    "Wr0ngSecretValue",
    "hunter2-secret",
    "s3cr3t-value",
    "from-systemd",
    "demo-secret-not-used-by-microsoft",
    "identity-header-not-for-logs",
)
# An access token: header and claims, each base64url JSON starting '{"' (eyJ), then a signature.
# The `logged` fixture's type: `logged(event)` → that event's JSON log entries.
Logged = Callable[[str], list[dict[str, Any]]]
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.")
# What the Azure platforms set for managed identities and workload identity; none may leak in.
PLATFORM_IDENTITY_VARIABLES = (
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "AZURE_FEDERATED_TOKEN_FILE",
)


@pytest.fixture(autouse=True)
def _no_real_managed_identity_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach Azure's instance metadata service (169.254.169.254): msal's VM
    protocol is pointed at a closed loopback port unless a test points it at an emulator."""
    for name in PLATFORM_IDENTITY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:9")


@pytest.fixture(autouse=True)
def _debug_logs_hold_no_secrets() -> Iterator[io.StringIO]:
    """The whole suite runs with DEBUG logging; no test may make a secret or token appear."""
    structlog.reset_defaults()
    stream = io.StringIO()
    configure_logging("debug", "json", stream=stream)
    yield stream
    assert flush_logs(), "the log writer did not drain"
    text = stream.getvalue()
    leaked = [secret for secret in SECRETS if secret in text] + JWT.findall(text)[:1]
    assert not leaked, f"logged: {leaked}"
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


@pytest.fixture
def logged(_debug_logs_hold_no_secrets: io.StringIO) -> Callable[[str], list[dict[str, Any]]]:
    """`logged(event)`: the JSON log entries of that event so far, as an administrator reads them."""

    def entries(event: str) -> list[dict[str, Any]]:
        assert flush_logs(), "the log writer did not drain"
        lines = _debug_logs_hold_no_secrets.getvalue().splitlines()
        return [entry for entry in map(json.loads, lines) if entry.get("event") == event]

    return entries


@pytest.fixture
async def emulator(tmp_path: Path) -> AsyncIterator[Emulator]:
    settings = EmulatorSettings(host="127.0.0.1", port=0, state_dir=tmp_path / "emulator")
    async with running_emulator(settings) as running:
        yield running


@pytest.fixture(params=["files", "postgresql"])
def queue_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Run a test on both queue backends: the file spool, and a cluster's PostgreSQL queue
    (every gateway the test configures with `config_document` uses it)."""
    spool = None
    if request.param == "postgresql":
        spool = cluster_spool(tmp_path, request.getfixturevalue("pg_dsn"))
    token = SPOOL.set(spool)
    try:
        yield request.param
    finally:
        SPOOL.reset(token)
