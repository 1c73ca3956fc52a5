"""`smtp-graph-gateway db …`: the cluster's database. `upgrade` applies the schema migrations this
version of the gateway needs (run it before starting a new version, or let the gateways do it
with `spool.postgresql.upgrade_schema: true`); `status` shows the schema, the nodes and the
queue as the database sees them."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.config import Config, load_config
from gateway.errors import SpoolError

if TYPE_CHECKING:
    from gateway.pgqueue.connection import Database


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `db` subcommands."""
    actions = parser.add_subparsers(dest="db_action", metavar="ACTION", required=True)
    for name, text in (
        ("upgrade", "apply the schema migrations this version needs"),
        ("status", "schema version, nodes and queue counts"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("--config", "-c", type=Path, required=True, help="YAML configuration")
        action.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if config.spool.backend != "postgresql" or config.spool.postgresql is None:
        print(
            "smtp-graph-gateway: this configuration keeps its queue in files "
            "(spool.backend: files); `db` is for spool.backend: postgresql",
            file=sys.stderr,
        )
        return 2
    return asyncio.run(_run(args, config))


async def _run(args: argparse.Namespace, config: Config) -> int:
    assert config.spool.postgresql is not None
    from gateway.pgqueue.connection import Database  # noqa: PLC0415 - the driver only when used

    db = Database(config.spool.postgresql)
    await db.open()
    try:
        if args.db_action == "upgrade":
            result = await _upgrade(db)
        else:
            result = await _status(db)
    except SpoolError as error:
        print(f"smtp-graph-gateway: {error}", file=sys.stderr)
        return 1
    finally:
        await db.close()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print(result)
    return 0


async def _upgrade(db: Database) -> dict[str, Any]:
    from gateway.pgqueue.schema import (  # noqa: PLC0415 - the driver only when used
        SCHEMA_VERSION,
        SchemaError,
        schema_version,
        upgrade,
    )

    async with db.connection() as connection:
        before = await schema_version(connection)
        if before > SCHEMA_VERSION:
            raise SchemaError(
                f"the database has schema version {before}, newer than this gateway knows "
                f"({SCHEMA_VERSION}); nothing was changed"
            )
        applied = await upgrade(connection)
    return {"database": db.where, "schema_version": SCHEMA_VERSION, "applied": applied}


async def _status(db: Database) -> dict[str, Any]:
    from gateway.pgqueue.schema import SCHEMA_VERSION, schema_version  # noqa: PLC0415 - the driver only when used

    async with db.connection() as connection:
        version = await schema_version(connection)
        result: dict[str, Any] = {
            "database": db.where,
            "schema_version": version,
            "gateway_knows": SCHEMA_VERSION,
        }
        if version == 0:
            return result
        cursor = await connection.execute(
            "SELECT node, name, extract(epoch FROM now() - heartbeat)::float8 AS silent,"
            " started_at FROM sgg_nodes ORDER BY node"
        )
        result["nodes"] = [
            {
                "node": row["node"],
                "name": row["name"],
                "heartbeat_age_s": round(row["silent"], 1),
                "started_at": row["started_at"].astimezone(datetime.UTC).isoformat(),
            }
            for row in await cursor.fetchall()
        ]
        cursor = await connection.execute(
            "SELECT state, count(*) AS n FROM sgg_messages GROUP BY state ORDER BY state"
        )
        result["messages"] = {row["state"]: row["n"] for row in await cursor.fetchall()}
    return result


def _print(result: dict[str, Any]) -> None:
    print(f"database:       {result['database']}")
    if "applied" in result:
        applied = result["applied"]
        done = f"applied {', '.join(map(str, applied))}" if applied else "nothing to apply"
        print(f"schema version: {result['schema_version']} ({done})")
        return
    print(f"schema version: {result['schema_version']} (this gateway: {result['gateway_knows']})")
    for node in result.get("nodes", []):
        print(f"node:           {node['node']} (heartbeat {node['heartbeat_age_s']} s ago)")
    for state, count in result.get("messages", {}).items():
        print(f"{state + ':':<15} {count}")
