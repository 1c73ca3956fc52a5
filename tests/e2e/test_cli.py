"""The command line: config errors, exit codes, hash-password, check."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from gateway.emulator import Emulator
from gateway.passwords import verify_password
from tests.support.gateway import config_document, write_config


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_invalid_config_lists_every_error_and_exits_78(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "smtp:\n  listeners: [{name: lan, port: 99999}]\n"
        "tenants:\n  - {name: c, tenant_id: t, client_id: x, client_secret: '${NOT_SET_ANYWHERE}',"
        " domains: [c.com]}\n"
        "spool: {directory: /tmp/x}\nlogging: {level: loud}\n"
    )
    result = run_cli("serve", "--config", str(config))
    assert result.returncode == 78
    assert "3 configuration errors" in result.stderr
    assert "smtp.listeners[0].port: must be between 0 and 65535, got 99999" in result.stderr
    assert (
        "tenants[0].client_secret: environment variable NOT_SET_ANYWHERE is not set"
        in result.stderr
    )
    assert "logging.level: unknown value 'loud'" in result.stderr


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    result = run_cli("serve", "--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 78
    assert "cannot read" in result.stderr


def test_no_command_prints_help_and_exits_2() -> None:
    result = run_cli()
    assert result.returncode == 2
    assert "serve" in result.stderr


def test_hash_password_output_verifies() -> None:
    result = run_cli("hash-password", stdin="correct horse\n")
    assert result.returncode == 0
    stored = result.stdout.strip()
    assert stored.startswith("$scrypt$")
    assert verify_password("correct horse", stored)
    assert not verify_password("wrong horse", stored)


async def test_check_gets_a_token_from_each_tenant(tmp_path: Path, emulator: Emulator) -> None:
    config = write_config(tmp_path, config_document(tmp_path, emulator))
    result = await _run_async("check", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "tenant contoso: ok" in result.stdout
    assert "Mail.Send (application) granted" in result.stdout


async def _run_async(*args: str) -> subprocess.CompletedProcess[str]:
    # The emulator runs in this event loop, so the CLI must run without blocking it.
    return await asyncio.to_thread(run_cli, *args)
