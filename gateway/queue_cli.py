"""`smtp-graph-gateway queue …`: look at and manage the queue, safe while the gateway runs.

With the file spool, reading (`list`, `show`) works on the files directly; changes go through
the daemon's control socket when a daemon runs, so it acts on them at once, and otherwise the
command takes the spool lock and makes the change itself (the next start sees it). With a
cluster's PostgreSQL queue every command works on the database directly, from any machine
that reaches it, with or without gateways running: each change is one guarded statement, and
the gateways hear of it at once (NOTIFY).

Human output uses plain words (queued, sending, held, corrupt) and one size (the message as
the client sent it); `--json` (before or after the action) keeps the stored state names.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import sys
from pathlib import Path
from typing import Any

from gateway.config import Config, format_size, load_config, parse_duration
from gateway.control import send_request
from gateway.errors import AdminError, SpoolError
from gateway.queue.admin import QueueAdmin
from gateway.queue.base import Queue
from gateway.queue.model import STATE_NAMES, STATE_WORDS, Listed
from gateway.queues import build_queue, describe

# Every name a state may be asked for by ("deferred" too, as the log says it).
_STATE_NAMES = {**STATE_NAMES, "deferred": "queue"}


def _state(text: str) -> str:
    try:
        return _STATE_NAMES[text.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"no state {text!r}: use queued, sending, held or corrupt"
        ) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `queue` subcommands."""
    parser.add_argument("--config", "-c", type=Path, required=True, help="YAML configuration")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    # `--json` after the action too, as `postqueue -j` users expect (it must not undo one given
    # before the action, hence SUPPRESS).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", parents=[common], help="list messages, one line each")
    listing.add_argument(
        "--state", type=_state, help="only queued, sending, held or corrupt messages"
    )
    actions.add_parser(
        "show", parents=[common], help="envelope, attempts, last error, next attempt"
    ).add_argument("queue_id")
    retry = actions.add_parser(
        "retry", parents=[common], help="try a queued message (or --all) now"
    )
    target = retry.add_mutually_exclusive_group(required=True)
    target.add_argument("queue_id", nargs="?")
    target.add_argument("--all", action="store_true")
    for name, text in (
        ("hold", "stop delivering a queued message"),
        ("release", "queue a held message again"),
        ("delete", "remove a message for good"),
    ):
        actions.add_parser(name, parents=[common], help=text).add_argument("queue_id")
    purge = actions.add_parser("purge", parents=[common], help="delete held messages")
    purge.add_argument("--held", action="store_true", required=True)
    purge.add_argument("--older-than", default="0s", help="e.g. 7d (default: all held)")


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def run(args: argparse.Namespace) -> int:
    """Perform the action; 0 on success, 1 when it was refused or failed."""
    config = load_config(args.config)
    return asyncio.run(_run(args, config))


async def _run(args: argparse.Namespace, config: Config) -> int:
    queue = build_queue(config.spool)
    clustered = config.spool.backend == "postgresql"
    if clustered:  # the database is the one place to ask, and to change
        try:
            await queue.open(exclusive=False)
        except SpoolError as error:
            print(f"smtp-graph-gateway: {error}", file=sys.stderr)
            await queue.close()
            return 1
    try:
        if args.action == "list":
            _print_list(await queue.listing(args.state), as_json=args.json)
            return 0
        if args.action == "show":
            info = await queue.show(args.queue_id)
            if info is None:
                where = describe(config.spool)
                print(f"smtp-graph-gateway: no message {args.queue_id} in {where}", file=sys.stderr)
                return 1
            _print_show(info, as_json=args.json)
            return 0
        if clustered:
            answer = await _admin(queue, args)
        else:
            answer = await _change_files(queue, config.spool.directory, args)
    except SpoolError as error:
        print(f"smtp-graph-gateway: {error}", file=sys.stderr)
        return 1
    finally:
        if clustered:
            await queue.close()
    return _print_answer(answer, as_json=args.json)


def _request(args: argparse.Namespace) -> tuple[str, float]:
    queue_id = "all" if getattr(args, "all", False) else getattr(args, "queue_id", "") or ""
    older_than = parse_duration(args.older_than) if args.action == "purge" else 0.0
    return queue_id, older_than


async def _admin(queue: Queue, args: argparse.Namespace) -> dict[str, Any]:
    queue_id, older_than = _request(args)
    try:
        return {"ok": True, **await QueueAdmin(queue).run(args.action, queue_id, older_than)}
    except AdminError as error:
        return {"ok": False, "error": str(error)}


async def _change_files(queue: Queue, directory: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Through the daemon's control socket, or with the spool taken when none runs."""
    queue_id, older_than = _request(args)
    request = {"operation": args.action, "queue_id": queue_id, "older_than": older_than}
    answer = await asyncio.to_thread(send_request, directory, request)
    if answer is not None:
        return answer
    try:
        await queue.open()
    except SpoolError as error:
        raise SpoolError(f"{error} and its control socket does not answer") from None
    try:
        return await _admin(queue, args)
    finally:
        await queue.close()


def _print_answer(answer: dict[str, Any], *, as_json: bool) -> int:
    if as_json:
        print(json.dumps(answer, indent=2))
    elif answer.get("ok"):
        for key, value in answer.items():
            if key != "ok":
                print(
                    f"{key}: {len(value)} message{'s' if len(value) != 1 else ''}"
                    + (f" ({', '.join(value)})" if value else "")
                )
    else:
        print(f"smtp-graph-gateway: {answer.get('error')}", file=sys.stderr)
    return 0 if answer.get("ok") else 1


def _print_list(listed: list[Listed], *, as_json: bool) -> None:
    """Like `mailq`, one line a message: ID, state, size, arrival, sender -> recipients, and
    what it waits for (next attempt and the last attempt's reason, or why it is held)."""
    if as_json:
        print(json.dumps([dataclasses.asdict(item) for item in listed], indent=2))
        return
    for item in listed:
        recipients = ", ".join(item.rcpt_tos) or "?"
        waits = ""
        if item.state == "queue" and item.next_attempt is not None:
            waits = f"next attempt {_when(item.next_attempt)}"
            if item.attempts:
                waits += f" after {item.attempts} attempt{'s' if item.attempts != 1 else ''}"
        if item.reason:
            waits = f"{waits}: {item.reason}" if waits else item.reason
        arrived = _when(item.received_at) if item.received_at else "?"
        print(
            f"{item.queue_id}  {STATE_WORDS.get(item.state, item.state):<7}  "
            f"{format_size(item.size):>9}  {arrived}  {item.mail_from or '<>'} -> {recipients}"
            + (f"  ({_one_line(waits)})" if waits else "")
        )
    total = sum(item.size for item in listed)
    count = len(listed)
    print(f"{count} message{'s' if count != 1 else ''}, {format_size(total)}")


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= 200 else flat[:197] + "..."


def _print_show(info: dict[str, Any], *, as_json: bool) -> None:
    envelope = info.get("envelope")
    if envelope is not None:
        info = {**info, "envelope": dataclasses.asdict(envelope)}
    if as_json:
        print(json.dumps(info, indent=2, default=str))
        return
    print(f"queue id:     {info['queue_id']}")
    print(f"state:        {STATE_WORDS.get(info['state'], info['state'])}")
    if info.get("leased_by"):
        print(f"sending on:   {info['leased_by']}")
    env = info.get("envelope") or {}
    if env:
        print(f"sender:       {env['mail_from'] or '<>'}")
        print(f"recipients:   {', '.join(env['rcpt_tos'])}")
        print(f"received:     {_when(env['received_at'])} from {env['client']} ({env['peer']})")
        print(f"size:         {format_size(env['size'])}")
    if "error" in info:
        print(f"unreadable:   {info['error']}")
    if "next_attempt" in info:
        print(f"next attempt: {_when(info['next_attempt'])}")
    for number, attempt in enumerate(info.get("attempts", []), 1):
        facts = [str(attempt[k]) for k in ("status", "code") if attempt.get(k)]
        if attempt.get("request_id"):
            facts.append(f"request-id {attempt['request_id']}")
        when = _when(attempt.get("at", 0))
        result = attempt.get("result", "")
        detail = " ".join([result, *facts]).strip()
        print(f"attempt {number}:    {when} {detail}: {attempt.get('reason', '')}".rstrip(": "))
    if "hold" in info:
        print(f"held because: {info['hold'].get('reason')}")
