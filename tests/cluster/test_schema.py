"""The cluster's schema: `db upgrade` creates it, a gateway refuses one it does not know, and
the least-privilege role README documents is enough to run (and `check` says when it is not)."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import subprocess
import sys
from pathlib import Path

import psycopg
import yaml

from gateway.emulator import Emulator
from gateway.pgqueue.schema import SCHEMA_VERSION
from tests.e2e.test_pipeline import MESSAGE
from tests.support.gateway import config_document, make_config, run_gateway

README = Path(__file__).resolve().parents[2] / "README.md"


def gateway_command(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def cluster_config(tmp_path: Path, emulator: Emulator, dsn: str, **postgresql: object) -> Path:
    spool = {
        "backend": "postgresql",
        "directory": str(tmp_path / "work"),
        "postgresql": {"dsn": dsn, "lease": "6s", **postgresql},
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config_document(tmp_path, emulator, spool=spool)))
    return path


def sql(dsn: str, statement: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(statement)  # type: ignore[arg-type]


async def test_db_upgrade_creates_the_schema_and_a_newer_one_is_refused(
    tmp_path: Path, emulator: Emulator, pg_dsn: str
) -> None:
    config = cluster_config(tmp_path, emulator, pg_dsn)

    # No schema and no upgrade_schema: the gateway says what to run instead of starting.
    refused = await asyncio.to_thread(gateway_command, "serve", "--config", str(config))
    assert refused.returncode != 0
    assert "db upgrade" in refused.stderr

    upgraded = await asyncio.to_thread(gateway_command, "db", "upgrade", "--config", str(config))
    assert upgraded.returncode == 0, upgraded.stderr
    again = await asyncio.to_thread(gateway_command, "db", "upgrade", "--config", str(config))
    assert again.returncode == 0, again.stderr
    status = await asyncio.to_thread(
        gateway_command, "db", "status", "--config", str(config), "--json"
    )
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["schema_version"] == SCHEMA_VERSION

    # A newer gateway upgraded the database: this one refuses it, and so does `db upgrade`.
    sql(pg_dsn, "UPDATE sgg_schema SET version = 99")
    newer = await asyncio.to_thread(gateway_command, "serve", "--config", str(config))
    assert newer.returncode != 0
    assert "newer than this gateway knows" in newer.stderr
    downgrade = await asyncio.to_thread(gateway_command, "db", "upgrade", "--config", str(config))
    assert downgrade.returncode != 0
    assert "newer" in downgrade.stderr


def readme_role_sql(role: str, database: str) -> list[str]:
    """The statements of README's least-privilege role, for `role` on `database`."""
    text = README.read_text()
    block = re.search(r"```sql\n(CREATE ROLE gateway.*?)```", text, re.DOTALL)
    assert block, "README lost its role SQL"
    statements = [s.strip() for s in block.group(1).split(";") if s.strip()]
    role_line = "CREATE ROLE gateway LOGIN PASSWORD '...'"
    renamed = []
    for statement in statements:
        text = re.sub(r"\bTO gateway\b", f"TO {role}", statement)
        text = text.replace(role_line, f"CREATE ROLE {role} LOGIN")
        renamed.append(text.replace("ON DATABASE gateway", f"ON DATABASE {database}"))
    return renamed


async def test_the_least_privilege_role_in_readme_runs_a_gateway(
    tmp_path: Path, emulator: Emulator, pg_dsn: str
) -> None:
    database = psycopg.conninfo.conninfo_to_dict(pg_dsn)["dbname"]
    role = f"sgg_role_{secrets.token_hex(4)}"
    owner = cluster_config(tmp_path / "owner", emulator, pg_dsn)
    upgraded = await asyncio.to_thread(gateway_command, "db", "upgrade", "--config", str(owner))
    assert upgraded.returncode == 0, upgraded.stderr
    for statement in readme_role_sql(role, str(database)):
        sql(pg_dsn, statement)
    sql(pg_dsn, f"REVOKE CREATE ON SCHEMA public FROM PUBLIC, {role}")
    dsn = psycopg.conninfo.make_conninfo(pg_dsn, user=role)
    try:
        config = cluster_config(tmp_path, emulator, dsn)
        checked = await asyncio.to_thread(gateway_command, "check", "--config", str(config))
        [line] = [x for x in checked.stdout.splitlines() if "permissions" in x and "table" in x]
        assert " ok " in line and "CREATE" not in line, checked.stdout

        spool = yaml.safe_load(config.read_text())["spool"]
        (tmp_path / "run").mkdir()
        async with run_gateway(make_config(tmp_path / "run", emulator, spool=spool)) as gateway:
            assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE) == {}
            [event] = await gateway.delivered(1)
        assert event.result == "delivered"

        # One grant less, and `check` names it.
        sql(pg_dsn, f"REVOKE INSERT ON sgg_chunks FROM {role}")
        checked = await asyncio.to_thread(gateway_command, "check", "--config", str(config))
        assert checked.returncode == 1
        assert "the role lacks INSERT on sgg_chunks" in checked.stdout
    finally:
        sql(pg_dsn, f"DROP OWNED BY {role}")
        sql(pg_dsn, f"DROP ROLE {role}")
