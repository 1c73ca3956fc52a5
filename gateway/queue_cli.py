"""`smtp-graph-gateway queue …`: look at and manage the spool, safe while the daemon runs.

Reading (`list`, `show`) works on the files directly. Changes go through the daemon's control
socket when a daemon runs, so it acts on them at once; otherwise the command takes the spool
lock and makes the change itself (the next start sees it).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
from pathlib import Path
from typing import Any

from gateway.config import load_config, parse_duration
from gateway.control import send_request
from gateway.errors import SpoolError
from gateway.spool import Spool
from gateway.spool.admin import AdminError, QueueAdmin

_CHANGES = ("retry", "hold", "release", "delete", "purge")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `queue` subcommands."""
    parser.add_argument("--config", "-c", type=Path, required=True, help="YAML configuration")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list messages")
    listing.add_argument("--state", choices=("queue", "active", "hold", "corrupt"))
    actions.add_parser("show", help="envelope, attempts, last error, next attempt").add_argument(
        "queue_id"
    )
    retry = actions.add_parser("retry", help="try a queued message (or --all) now")
    target = retry.add_mutually_exclusive_group(required=True)
    target.add_argument("queue_id", nargs="?")
    target.add_argument("--all", action="store_true")
    for name, text in (
        ("hold", "stop delivering a queued message"),
        ("release", "queue a held message again"),
        ("delete", "remove a message for good"),
    ):
        actions.add_parser(name, help=text).add_argument("queue_id")
    purge = actions.add_parser("purge", help="delete held messages")
    purge.add_argument("--held", action="store_true", required=True)
    purge.add_argument("--older-than", default="0s", help="e.g. 7d (default: all held)")


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def run(args: argparse.Namespace) -> int:
    """Perform the action; 0 on success, 1 when it was refused or failed."""
    config = load_config(args.config)
    spool = Spool(config.spool.directory)
    if args.action == "list":
        entries = list(spool.entries(args.state))
        if args.json:
            print(json.dumps([dataclasses.asdict(entry) for entry in entries], indent=2))
        else:
            for e in entries:
                due = f"next attempt {_when(e.next_attempt)}" if e.state == "queue" else ""
                print(f"{e.queue_id}  {e.state:<7} {e.size:>10} bytes  {due}".rstrip())
            print(f"{len(entries)} message{'s' if len(entries) != 1 else ''}")
        return 0
    if args.action == "show":
        info = spool.show(args.queue_id)
        if info is None:
            print(f"smtp-graph-gateway: no message {args.queue_id} in the spool", file=sys.stderr)
            return 1
        _print_show(info, as_json=args.json)
        return 0
    return _change(spool, config.spool.directory, args)


def _change(spool: Spool, directory: Path, args: argparse.Namespace) -> int:
    queue_id = "all" if getattr(args, "all", False) else getattr(args, "queue_id", "") or ""
    older_than = parse_duration(args.older_than) if args.action == "purge" else 0.0
    request = {"operation": args.action, "queue_id": queue_id, "older_than": older_than}
    answer = send_request(directory, request)
    if answer is None:
        try:
            spool.open()
        except SpoolError as error:
            print(
                f"smtp-graph-gateway: {error} and its control socket does not answer",
                file=sys.stderr,
            )
            return 1
        try:
            answer = {"ok": True, **QueueAdmin(spool).run(args.action, queue_id, older_than)}
        except AdminError as error:
            answer = {"ok": False, "error": str(error)}
        finally:
            spool.close()
    if args.json:
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


def _print_show(info: dict[str, Any], *, as_json: bool) -> None:
    envelope = info.get("envelope")
    if envelope is not None:
        info = {**info, "envelope": dataclasses.asdict(envelope)}
    if as_json:
        print(json.dumps(info, indent=2, default=str))
        return
    print(f"queue id:     {info['queue_id']}")
    print(f"state:        {info['state']}")
    env = info.get("envelope") or {}
    if env:
        print(f"sender:       {env['mail_from'] or '<>'}")
        print(f"recipients:   {', '.join(env['rcpt_tos'])}")
        print(f"received:     {_when(env['received_at'])} from {env['client']} ({env['peer']})")
        print(f"size:         {env['size']} bytes")
    if "next_attempt" in info:
        print(f"next attempt: {_when(info['next_attempt'])}")
    for number, attempt in enumerate(info.get("attempts", []), 1):
        detail = " ".join(str(attempt.get(k, "")) for k in ("status", "code") if attempt.get(k))
        when = _when(attempt.get("at", 0))
        print(f"attempt {number}:    {when} {detail} {attempt.get('reason', '')}".rstrip())
    if "hold" in info:
        print(f"held because: {info['hold'].get('reason')}")
