"""`smtp-graph-gateway spool migrate --from OLD.yaml --to NEW.yaml`: move every queued and held
message from the queue one configuration names to the queue another names — a file spool into
a cluster's PostgreSQL queue, or back — keeping queue IDs, attempt histories, next attempts and
hold reasons (`gateway.queue.migrate`).

The old queue must not be in use: a file spool is taken with its lock (stop its gateway first),
a cluster's database must have no live node. The new queue may be in use: a cluster's nodes
start delivering what arrives at once; a file spool is taken with its lock, so its gateway must
be stopped (it finds the messages when it starts). Interrupted, the command can be run again:
nothing is lost, nothing is queued twice.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from gateway.config import Config, load_config
from gateway.errors import SpoolError
from gateway.queue.base import Queue
from gateway.queue.migrate import Moved, migrate
from gateway.queue.model import Envelope
from gateway.queues import build_queue, describe
from gateway.routing import router_for


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `spool` subcommands."""
    actions = parser.add_subparsers(dest="spool_action", metavar="ACTION", required=True)
    move = actions.add_parser(
        "migrate", help="move every queued and held message to another queue backend"
    )
    move.add_argument("--from", dest="source", type=Path, required=True, help="the old config")
    move.add_argument("--to", dest="target", type=Path, required=True, help="the new config")
    move.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    """0 when every message moved; 1 when some stayed behind (they are listed) or it failed."""
    source, target = load_config(args.source), load_config(args.target)
    if describe(source.spool) == describe(target.spool):
        print(
            f"smtp-graph-gateway: --from and --to both name {describe(source.spool)}",
            file=sys.stderr,
        )
        return 2
    return asyncio.run(_run(args, source, target))


async def _run(args: argparse.Namespace, source: Config, target: Config) -> int:
    old, new = build_queue(source.spool), build_queue(target.spool)
    opened: list[Queue] = []
    try:
        await _open_old(old, source)
        opened.append(old)
        await new.open(exclusive=target.spool.backend == "files")
        opened.append(new)
        router = router_for(target)

        def mailbox_of(envelope: Envelope) -> str:
            routes = router.routes_for(envelope)
            return routes[0].mailbox.lower() if routes else ""

        moved = await migrate(old, new, mailbox_of=mailbox_of)
    except SpoolError as error:
        print(
            f"smtp-graph-gateway: {error}; what moved so far stays moved, run the command "
            "again to move the rest",
            file=sys.stderr,
        )
        return 1
    finally:
        for queue in opened:
            await queue.close()
    _report(moved, describe(source.spool), describe(target.spool), as_json=args.json)
    return 0 if moved.complete else 1


async def _open_old(queue: Queue, config: Config) -> None:
    """Take the old queue for this command: nothing else may deliver from it meanwhile."""
    if config.spool.backend == "files":
        try:
            await queue.open()
        except SpoolError as error:
            raise SpoolError(f"{error}: stop the gateway that uses it first") from None
        await queue.recover()  # what a stopped gateway had leased is queued again
        return
    from gateway.pgqueue.queue import PgQueue  # noqa: PLC0415 - the driver only when used

    assert isinstance(queue, PgQueue)
    await queue.open(exclusive=False)
    live = await queue.live_nodes()
    if live:
        raise SpoolError(
            f"{len(live)} gateway{'s' if len(live) != 1 else ''} still use the cluster's queue "
            f"({', '.join(live)}); stop them first"
        )
    await queue.cluster.reclaim(patient=False)  # leases of stopped nodes: queued again


def _report(moved: Moved, source: str, target: str, *, as_json: bool) -> None:
    if as_json:
        result: dict[str, Any] = {
            "from": source,
            "to": target,
            "moved": moved.moved,
            "already_there": moved.already,
            "left": moved.left,
        }
        print(json.dumps(result, indent=2))
        return
    count = len(moved.moved)
    print(f"moved {count} message{'s' if count != 1 else ''} from {source} to {target}")
    if moved.already:
        print(
            f"{len(moved.already)} were there already (an earlier run): removed from the old queue"
        )
    for queue_id, why in moved.left.items():
        print(f"left behind: {queue_id}: {why}")
