"""What `check` asks of a cluster's database: can it be reached (and written: not a standby),
which schema it has, whether the gateway's role may do what the gateway does, and whether a
commit waits for a synchronous standby — so the administrator knows if `250` means the message
is on one server or on two."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg.rows import dict_row

from gateway.config import PostgresSettings
from gateway.errors import SpoolError
from gateway.pgqueue.connection import Connection, reason, where
from gateway.pgqueue.schema import SCHEMA_VERSION, schema_version

# What a running gateway does to each table (README's least-privilege role grants exactly this).
NEEDS = {
    "sgg_schema": ("SELECT",),
    "sgg_nodes": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "sgg_messages": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "sgg_chunks": ("SELECT", "INSERT", "DELETE"),
    "sgg_mailboxes": ("SELECT", "INSERT", "UPDATE"),
}


@dataclass
class Finding:
    check: str
    passed: bool
    detail: str
    warning: bool = False


@dataclass
class Inspection:
    """Every finding, in order."""

    findings: list[Finding] = field(default_factory=list)

    def add(self, check: str, passed: bool, detail: str, *, warning: bool = False) -> None:
        self.findings.append(Finding(check, passed, detail, warning))


async def inspect(settings: PostgresSettings, dsn: str) -> Inspection:
    """Connect once (no retries) and look."""
    found = Inspection()
    try:
        connection = await psycopg.AsyncConnection.connect(
            dsn, autocommit=True, row_factory=dict_row
        )
    except psycopg.Error as error:
        found.add("database", False, f"{where(settings)} cannot be reached: {reason(error)}")
        return found
    try:
        async with connection:
            await _look(connection, settings, found)
    except (psycopg.Error, SpoolError) as error:
        found.add("database", False, f"the check stopped: {reason(error)}")
    return found


async def _value(connection: Connection, sql: str, *parameters: object) -> object:
    """The first column of the first row (None when there is none)."""
    cursor = await connection.execute(sql, parameters)
    row = await cursor.fetchone()
    return None if row is None else next(iter(row.values()))


async def _look(connection: Connection, settings: PostgresSettings, found: Inspection) -> None:
    server = await _value(connection, "SHOW server_version")
    role = await _value(connection, "SELECT current_user")
    standby = await _value(connection, "SELECT pg_is_in_recovery()")
    if standby:
        found.add(
            "database",
            False,
            f"{where(settings)} is a standby (read-only): list the primary in the DSN, or "
            "every host with target_session_attrs=read-write",
        )
        return
    found.add("database", True, f"{where(settings)}: PostgreSQL {server}, role {role}")
    if await _value(connection, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
        found.add(
            "role",
            True,
            f"{role} is a superuser: the gateway needs far less (README: the gateway's role)",
            warning=True,
        )

    version = await schema_version(connection)
    if version == SCHEMA_VERSION:
        found.add("schema", True, f"version {version}")
    elif version > SCHEMA_VERSION:
        found.add(
            "schema",
            False,
            f"version {version} is newer than this gateway knows ({SCHEMA_VERSION}): a newer "
            "gateway upgraded it; run that version here too",
        )
    elif settings.upgrade_schema:
        found.add(
            "schema",
            True,
            f"version {version}; the gateway upgrades it to {SCHEMA_VERSION} at start "
            "(upgrade_schema: true)",
            warning=True,
        )
    else:
        found.add(
            "schema",
            False,
            f"version {version}, this gateway needs {SCHEMA_VERSION}: run "
            "`smtp-graph-gateway db upgrade --config FILE`",
        )
    await _privileges(connection, version, found)
    await _standby(connection, found)


async def _privileges(connection: Connection, version: int, found: Inspection) -> None:
    missing = []
    if version > 0:
        for table, privileges in NEEDS.items():
            for privilege in privileges:
                allowed = await _value(
                    connection, "SELECT has_table_privilege(%s, %s)", table, privilege
                )
                if not allowed:
                    missing.append(f"{privilege} on {table}")
        functions = {
            "sgg_claim": "sgg_claim(text, interval, bigint, bigint, integer, integer)",
            "sgg_queued_mailboxes": "sgg_queued_mailboxes()",
            "sgg_open_mailboxes": "sgg_open_mailboxes(integer)",
        }
        for name, signature in functions.items():
            if version >= SCHEMA_VERSION and not await _value(
                connection, "SELECT has_function_privilege(%s, 'EXECUTE')", signature
            ):
                missing.append(f"EXECUTE on {name}")  # (an older schema has older functions)
    may_create = await _value(connection, "SELECT has_schema_privilege(current_schema(), 'CREATE')")
    needs_create = version < SCHEMA_VERSION
    if needs_create and not may_create:
        missing.append("CREATE on the schema (to create the tables: `db upgrade`)")
    if missing:
        found.add(
            "permissions",
            False,
            "the role lacks " + "; ".join(missing) + " (see README, the gateway's role)",
        )
        return
    extra = " and CREATE (needed only for `db upgrade`)" if may_create else ""
    found.add("permissions", True, f"what the gateway does to its tables{extra}")


async def _standby(connection: Connection, found: Inspection) -> None:
    names = str(await _value(connection, "SHOW synchronous_standby_names") or "")
    commit = str(await _value(connection, "SHOW synchronous_commit") or "")
    if not names.strip() or commit in ("off", "local"):
        why = (
            "synchronous_standby_names is empty"
            if not names.strip()
            else f"synchronous_commit is {commit}"
        )
        found.add(
            "synchronous standby",
            False,
            f"none ({why}): `250` means the message is on this server only; a failover can "
            "lose what was acknowledged last",
            warning=True,
        )
        return
    cursor = await connection.execute(
        "SELECT application_name, sync_state FROM pg_stat_replication"
        " WHERE sync_state IN ('sync', 'quorum')"
    )
    rows = await cursor.fetchall()
    if rows:
        standbys = ", ".join(f"{row['application_name']} ({row['sync_state']})" for row in rows)
        found.add(
            "synchronous standby",
            True,
            f"{standbys}: `250` means the message is committed on two servers "
            f"(synchronous_commit {commit})",
        )
        return
    found.add(
        "synchronous standby",
        False,
        f"synchronous_standby_names is {names!r} but no such standby is streaming (or this "
        "role may not see pg_stat_replication: grant it pg_monitor): commits wait for it, so "
        "new mail waits and is refused with 451",
        warning=True,
    )
