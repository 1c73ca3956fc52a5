"""Private PostgreSQL servers for the cluster tests, made from the installed server binaries.

Each server lives in a temporary folder (data, socket, log), listens on 127.0.0.1 on a free
port, and is stopped afterwards: tests never depend on what a shared server holds. As root
(CI), the server runs as the `postgres` user, since PostgreSQL refuses to run as root. A
standby is made with `pg_basebackup -R`; `stop(mode="immediate")` is a crash;
`promote()` a failover.

`SGG_TEST_POSTGRES_DSN` points the tests that need only a database (not a server to crash) at
an existing server instead. Where neither exists the tests skip with the reason; with
`CI=true` they fail instead.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.ports import free_port


def binaries() -> Path | None:
    """The folder of initdb and pg_ctl, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    if found:
        return Path(found[0]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def require_postgres() -> Path:
    """The binaries, or skip (fail under CI) saying why."""
    found = binaries()
    if found is None:
        reason = "no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the PostgreSQL tests: {reason}")
        pytest.skip(reason)
    return found


class Server:
    """One private PostgreSQL server."""

    def __init__(self, base: Path | None = None, *, port: int | None = None) -> None:
        self.bin = require_postgres()
        # Not under pytest's tmp_path: that is private to root, and the server runs as postgres.
        self.base = base or Path(tempfile.mkdtemp(prefix="sgg-pg-"))
        self.data = self.base / "data"
        self.port = port or free_port()
        self.log = self.base / "server.log"
        self._as_postgres = os.geteuid() == 0

    def _run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        args = [str(self.bin / command[0]), *command[1:]]
        if self._as_postgres:
            args = ["runuser", "-u", "postgres", "--", *args]
        return subprocess.run(args, capture_output=True, text=True, check=check, timeout=120)

    def _own(self, path: Path) -> None:
        if self._as_postgres:
            entry = pwd.getpwnam("postgres")
            for place in [path, *path.rglob("*")]:
                os.chown(place, entry.pw_uid, entry.pw_gid)

    def init(self, **settings: str) -> Server:
        """initdb (trust for local connections) and the settings the tests need."""
        self.base.mkdir(parents=True, exist_ok=True)
        self._own(self.base)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.base}'",
            "max_connections": "200",
            "wal_level": "replica",
            "max_wal_senders": "5",
            "wal_keep_size": "64MB",
            "hot_standby": "on",
            **settings,
        }
        with (self.data / "postgresql.conf").open("a") as handle:
            handle.writelines(f"{key} = {value}\n" for key, value in conf.items())
        with (self.data / "pg_hba.conf").open("a") as handle:
            handle.write("host replication all 127.0.0.1/32 trust\n")
        return self

    def start(self) -> Server:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self, mode: str = "immediate") -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-m",
            mode,
            "-w",
            "-t",
            "60",
            "-l",
            str(self.log),
            "restart",
        )

    def promote(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "promote")

    def standby_of(self, primary: Server, name: str = "standby1") -> Server:
        """Make this server a streaming standby of `primary` (pg_basebackup -R)."""
        self.base.mkdir(parents=True, exist_ok=True)
        self._own(self.base)
        self._run(
            "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            "postgres",
            "-D",
            str(self.data),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
        )
        with (self.data / "postgresql.conf").open("a") as handle:
            handle.write(f"port = {self.port}\nunix_socket_directories = '{self.base}'\n")
        # -R wrote a primary_conninfo into postgresql.auto.conf (read last, so it wins); this
        # one names the standby as synchronous_standby_names knows it.
        with (self.data / "postgresql.auto.conf").open("a") as handle:
            handle.write(
                f"primary_conninfo = 'host=127.0.0.1 port={primary.port} "
                f"user=postgres application_name={name}'\n"
            )
        return self

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user=postgres"

    def sql(self, statement: str, dbname: str = "postgres") -> str:
        """Run SQL with psql; its output (tuples only)."""
        result = subprocess.run(
            [
                str(self.bin / "psql"),
                "-X",
                "-A",
                "-t",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                dbname,
                "-c",
                statement,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return result.stdout.strip()

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (
                subprocess.run(
                    [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                    capture_output=True,
                    check=False,
                ).returncode
                == 0
            ):
                return
            time.sleep(0.1)
        raise TimeoutError(f"the server on {self.port} is not ready")

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


def shared_dsn() -> str | None:
    """A server the environment names (`SGG_TEST_POSTGRES_DSN`), if any."""
    return os.environ.get("SGG_TEST_POSTGRES_DSN") or None


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    """A private server for the test session."""
    server = Server().init()
    server.start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_dsn(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database of its own for one test; dropped afterwards."""
    import psycopg  # noqa: PLC0415 - only the cluster tests need the driver

    base = shared_dsn()
    if base is None:
        base = request.getfixturevalue("pg_server").dsn()
    name = f"sgg_test_{secrets.token_hex(4)}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    dsn = psycopg.conninfo.make_conninfo(base, dbname=name)
    try:
        yield dsn
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def cluster_spool(tmp_path: Path, dsn: str, **postgresql: Any) -> dict[str, Any]:
    """The `spool` section of a cluster node: the database, upgraded at start, short leases."""
    return {
        "backend": "postgresql",
        "directory": str(tmp_path / "work"),
        "postgresql": {"dsn": dsn, "upgrade_schema": True, "lease": "6s", **postgresql},
    }
