"""Connections to the cluster's database: the DSN as libpq reads it, a pool that reconnects,
and whether the database can be reached right now.

The DSN is libpq's, so multi-host failover (`host=a,b target_session_attrs=read-write`), TLS
(`sslmode=verify-full sslrootcert=…`) and the rest mean what PostgreSQL documents. A password
given apart from it (`spool.postgresql.password`) is added; TCP keepalives and a connect
timeout are added unless the DSN sets them, so a dead server or a cut network is noticed in
seconds. The DSN is never logged: `where()` names the hosts and database only.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import structlog
from psycopg import conninfo
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from gateway.config import PostgresSettings
from gateway.errors import ConfigError, ConfigIssue, QueueRefused, QueueUnavailable

log = structlog.get_logger("gateway.queue")
_DEFAULTS = {
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "application_name": "smtp-graph-gateway",
}
Connection = psycopg.AsyncConnection[dict[str, Any]]


def connection_string(settings: PostgresSettings) -> str:
    """The DSN with the password and the defaults added (`ConfigError` when it is no DSN)."""
    try:
        parts = conninfo.conninfo_to_dict(settings.dsn.reveal())
    except psycopg.ProgrammingError:
        raise ConfigError(
            [ConfigIssue("spool.postgresql.dsn", "not a libpq connection string")]
        ) from None
    if settings.password is not None:
        parts["password"] = settings.password.reveal()
    for key, value in _DEFAULTS.items():
        parts.setdefault(key, value)
    return conninfo.make_conninfo("", **parts)


def where(settings: PostgresSettings) -> str:
    """The hosts and database of the DSN, for log lines (never the password)."""
    try:
        parts = conninfo.conninfo_to_dict(settings.dsn.reveal())
    except psycopg.ProgrammingError:
        return "an unreadable DSN"
    hosts = parts.get("host") or parts.get("hostaddr") or "the local socket"
    return f"{hosts}/{parts.get('dbname') or parts.get('user') or 'postgres'}"


def reason(error: BaseException) -> str:
    """A database error in a line an administrator can act on (no DSN, no password)."""
    if isinstance(error, psycopg.OperationalError):
        text = str(error).strip().splitlines()
        return text[-1][:300] if text else type(error).__name__
    if isinstance(error, psycopg.Error):
        return f"{type(error).__name__}: {str(error).strip().splitlines()[0][:300]}"
    return type(error).__name__


def lost_a_race(error: BaseException) -> bool:
    """A statement that failed though the connection is fine (psycopg raises these as
    OperationalError): a deadlock or serialization failure (class 40), a lock time-out
    (55P03), a statement time-out or cancel (57014)."""
    state = (error.sqlstate if isinstance(error, psycopg.Error) else None) or ""
    return state.startswith("40") or state in ("55P03", "57014")


class ConnectionLost(QueueUnavailable):
    """The connection broke while a statement was under way: whether it took effect is not
    known (a COMMIT may have reached the server)."""


POOL_WAIT = 10.0  # seconds a caller waits for a pooled connection


class Database:
    """The pool of one gateway, and its state."""

    def __init__(self, settings: PostgresSettings) -> None:
        self.settings = settings
        self.dsn = connection_string(settings)
        self.where = where(settings)
        self.reachable = False
        # Monotonic time the database was found again after it was lost (None: never lost
        # since it was first reached).
        self.regained_at: float | None = None
        self._reached = False
        self.problem = f"the queue's database ({self.where}) has not been reached yet"
        self._pool: AsyncConnectionPool[Connection] | None = None

    async def open(self) -> None:
        """Start the pool (connections are made as needed, and made again when they break)."""
        self._pool = AsyncConnectionPool(
            self.dsn,
            min_size=1,
            max_size=self.settings.connections,
            kwargs={"autocommit": True, "row_factory": dict_row},
            open=False,
            timeout=POOL_WAIT,
            reconnect_timeout=0,  # keep trying: the gateway waits for its database
            check=AsyncConnectionPool.check_connection,
            name="sgg-queue",
        )
        await self._pool.open(wait=False)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A pooled connection (autocommit); `SpoolError` saying why when the database cannot
        be used, and the state is updated for readiness and new connections."""
        assert self._pool is not None
        given = False
        try:
            async with self._pool.connection() as connection:
                given = True
                yield connection
        except (
            psycopg.OperationalError,
            psycopg.InterfaceError,
            psycopg.errors.ReadOnlySqlTransaction,  # a standby: the DSN lacks read-write
            TimeoutError,
        ) as error:
            if lost_a_race(error):  # reached; the step fails, the database is there
                problem = f"the queue's database refused a statement: {reason(error)}"
                raise QueueRefused(problem) from None
            self.lost(error)
            problem = f"the queue's database cannot be used: {reason(error)}"
            raise (ConnectionLost(problem) if given else QueueUnavailable(problem)) from None
        except PoolTimeout as error:
            self.lost(error)
            raise QueueUnavailable("the queue's database gives no connection in time") from None
        except psycopg.Error as error:
            # Reached, but a statement failed (a newer node's schema change, revoked rights, a
            # constraint): the caller's step fails as a queue error, never as a bug that kills
            # a worker or a session.
            problem = f"the queue's database refused a statement: {reason(error)}"
            raise QueueRefused(problem) from None
        self.found()

    def lost(self, error: BaseException) -> None:
        """A call failed for want of the database: say so once."""
        problem = f"the queue's database ({self.where}) cannot be reached: {reason(error)}"
        if self.reachable or problem != self.problem:
            log.error(
                "queue_unreachable",
                database=self.where,
                reason=reason(error),
                action="new mail is refused (421/451) until it is back; the gateway reconnects "
                "by itself; check the database server and the network",
            )
        self.reachable = False
        self.problem = problem

    def found(self) -> None:
        """A call worked: the database is there."""
        if not self.reachable:
            log.info("queue_reachable", database=self.where)
            if self._reached:
                self.regained_at = time.monotonic()
            self._reached = True
        self.reachable = True
        self.problem = ""

    async def listen(self, channel: str) -> Connection:
        """A connection of its own for LISTEN (notifications block other use of it)."""
        connection = await psycopg.AsyncConnection.connect(
            self.dsn, autocommit=True, row_factory=dict_row
        )
        await connection.execute(f"LISTEN {channel}")
        return connection


async def retry_delay(attempt: int) -> None:
    """Back off between reconnects: 0.5 s doubling to 10 s."""
    await asyncio.sleep(min(10.0, 0.5 * 2 ** min(attempt, 5)))
