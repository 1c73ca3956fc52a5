"""A failed reload shows in the metrics, and a live `/metrics` passes `promtool check metrics`
(issue #19): what a Prometheus administrator alerts on must be there and well named."""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from gateway.config import load_config
from gateway.emulator import Emulator
from tests.e2e.test_operations import HTTP, get, sample
from tests.e2e.test_pipeline import MESSAGE
from tests.support.gateway import config_document, run_gateway, write_config

PREFIX = "smtp_graph_gateway_"


def promtool() -> str:
    """promtool's path. Skipped where it is not installed, except in CI (`CI=true`), whose
    `.ci/run` installs it: there a missing promtool fails the test."""
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is not installed; .ci/run installs Debian's prometheus package")
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    return found


async def test_a_failed_reload_shows_in_the_metrics(tmp_path: Path, emulator: Emulator) -> None:
    document = config_document(tmp_path, emulator, http=HTTP)
    path = write_config(tmp_path, document)
    async with run_gateway(load_config(path)) as gateway:
        _status, text = await get(gateway, "/metrics")
        assert sample(text, PREFIX + "config_last_reload_success") == 1
        assert sample(text, PREFIX + "config_reload_failures_total") == 0

        path.write_text("smtp: {listeners: []}\ntenants: nope\n")
        assert await gateway.gateway.reload() is False
        _status, text = await get(gateway, "/metrics")
        assert sample(text, PREFIX + "config_last_reload_success") == 0
        assert sample(text, PREFIX + "config_reload_failures_total") == 1

        path.write_text(yaml.safe_dump(document))
        assert await gateway.gateway.reload() is True
        _status, text = await get(gateway, "/metrics")
        assert sample(text, PREFIX + "config_last_reload_success") == 1
        assert sample(text, PREFIX + "config_reload_failures_total") == 1  # a counter


async def test_live_metrics_pass_promtool(tmp_path: Path, emulator: Emulator) -> None:
    """promtool refused `…_credential_expiry_days` ("use base unit seconds")."""
    tool = promtool()
    document = config_document(tmp_path, emulator, http=HTTP)
    document["tenants"][0]["client_secret_expires"] = "2030-01-31"
    async with run_gateway(load_config(write_config(tmp_path, document))) as gateway:
        assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE) == {}
        await gateway.delivered(1)
        status, text = await get(gateway, "/metrics")
    assert status == 200
    expires = datetime.datetime(2030, 1, 31, tzinfo=datetime.UTC).timestamp()
    assert (
        sample(
            text,
            PREFIX + "credential_expiry_timestamp_seconds",
            tenant="contoso",
            credential="client_secret",
        )
        == expires
    )
    checked = subprocess.run(
        [tool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout + checked.stderr == ""  # no lint warnings either
