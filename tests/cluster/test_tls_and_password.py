"""The database over TLS with the server's name verified (`sslmode=verify-full`), and the role's
password from a file in `$CREDENTIALS_DIRECTORY` or from `${ENV}` — never in a log line."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
import yaml

from gateway.config import load_config
from gateway.emulator import Emulator
from gateway.observability.logging import flush_logs
from tests.e2e.test_pipeline import MESSAGE
from tests.support.gateway import config_document, run_gateway
from tests.support.postgres import Server

PASSWORD = "tls-role-Secret-4711"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    """A private server that takes the role `sgg_tls` only over TLS with its password; the CA
    file that signed the server's certificate (for localhost)."""
    ca = trustme.CA()
    server = Server().init(ssl="on", ssl_cert_file="'server.crt'", ssl_key_file="'server.key'")
    issued = ca.issue_cert("localhost", "127.0.0.1")
    issued.cert_chain_pems[0].write_to_path(str(server.data / "server.crt"))
    issued.private_key_pem.write_to_path(str(server.data / "server.key"))
    os.chmod(server.data / "server.key", 0o600)
    hba = server.data / "pg_hba.conf"
    hba.write_text(
        "hostssl all sgg_tls 127.0.0.1/32 scram-sha-256\n"
        "host all sgg_tls 127.0.0.1/32 reject\n" + hba.read_text()
    )
    server._own(server.data)
    server.start()
    server.sql(f"CREATE ROLE sgg_tls LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
    authority = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(authority))
    try:
        yield server, authority
    finally:
        server.destroy()


def write_config(tmp_path: Path, emulator: Emulator, dsn: str, **postgresql: str) -> Path:
    spool = {
        "backend": "postgresql",
        "directory": str(tmp_path / "work"),
        "postgresql": {"dsn": dsn, "upgrade_schema": True, **postgresql},
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config_document(tmp_path, emulator, spool=spool)))
    return path


def check(config: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **env},
    )


def queue_line(output: str, check_name: str) -> str:
    [line] = [x for x in output.splitlines() if check_name in x]
    return line


async def test_verified_tls_and_a_password_from_the_credentials_directory(
    tmp_path: Path,
    emulator: Emulator,
    tls_server: tuple[Server, Path],
    monkeypatch: pytest.MonkeyPatch,
    _debug_logs_hold_no_secrets: io.StringIO,
) -> None:
    server, authority = tls_server
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "db-password").write_text(PASSWORD + "\n")
    dsn = (
        f"host=localhost port={server.port} dbname=postgres user=sgg_tls "
        f"sslmode=verify-full sslrootcert={authority}"
    )
    config = write_config(tmp_path, emulator, dsn, password_file="db-password")

    checked = await asyncio.to_thread(check, config, CREDENTIALS_DIRECTORY=str(credentials))
    assert " ok " in queue_line(checked.stdout, "database"), checked.stdout
    assert PASSWORD not in checked.stdout + checked.stderr

    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    async with run_gateway(load_config(config)) as gateway:
        assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE) == {}
        [event] = await gateway.delivered(1)
    assert event.result == "delivered"
    # (The server refuses this role without TLS, so the message went over TLS.)
    assert flush_logs()
    assert PASSWORD not in _debug_logs_hold_no_secrets.getvalue()


async def test_a_server_certificate_from_another_ca_is_refused_with_the_reason(
    tmp_path: Path, emulator: Emulator, tls_server: tuple[Server, Path]
) -> None:
    server, _authority = tls_server
    stranger = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(stranger))
    dsn = (
        f"host=localhost port={server.port} dbname=postgres user=sgg_tls "
        f"sslmode=verify-full sslrootcert={stranger}"
    )
    config = write_config(tmp_path, emulator, dsn, password="${DB_PASSWORD}")
    checked = await asyncio.to_thread(check, config, DB_PASSWORD=PASSWORD)
    assert checked.returncode == 1
    line = queue_line(checked.stdout, "database")
    assert "certificate verify failed" in line, checked.stdout
    assert PASSWORD not in checked.stdout + checked.stderr

    # The right CA and the password from the environment: reachable.
    _server, authority = tls_server
    config = write_config(
        tmp_path, emulator, dsn.replace(str(stranger), str(authority)), password="${DB_PASSWORD}"
    )
    checked = await asyncio.to_thread(check, config, DB_PASSWORD=PASSWORD)
    assert " ok " in queue_line(checked.stdout, "database"), checked.stdout
