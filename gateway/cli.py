"""Command-line interface: parse arguments, set up logging, map errors to exit codes.

This is the only module that decides exit statuses: 0 success, 1 a runtime failure, 2 a usage
error, 78 (EX_CONFIG) an invalid configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway import __version__
from gateway.config import Config, load_config
from gateway.errors import ConfigError, GatewayError
from gateway.observability.logging import configure_logging, flush_logs

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_CONFIG = 0, 1, 2, 78


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smtp-graph-gateway",
        description="Accept SMTP from devices and deliver it through Microsoft Graph.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway daemon")
    serve.add_argument("--config", "-c", type=Path, required=True, help="YAML configuration")

    check = commands.add_parser("check", help="validate the config and test each tenant")
    check.add_argument("--config", "-c", type=Path, required=True, help="YAML configuration")
    check.add_argument("--tenant", help="check only this tenant")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.add_argument("--mailbox", help="check that the app may send as this mailbox")
    check.add_argument("--send-test", metavar="TO", help="send a real test message to TO")

    login = commands.add_parser(
        "login", help="sign in the account of a delegated tenant (auth: delegated)"
    )
    login.add_argument("tenant", help="the tenant's name")
    login.add_argument("--config", "-c", type=Path, required=True, help="YAML configuration")
    login.add_argument(
        "--browser",
        action="store_true",
        help="sign in in a browser on this machine (authorization code with PKCE on a "
        "http://localhost redirect) instead of with a device code",
    )
    login.add_argument("--port", type=int, default=0, help="with --browser: the redirect port")

    demo = commands.add_parser("demo", help="run the gateway with a local Graph emulator")
    demo.add_argument("--smtp-port", type=int, default=2525, help="SMTP port (default 2525)")
    demo.add_argument(
        "--console-port", type=int, default=8026, help="operator console port (default 8026)"
    )
    demo.add_argument(
        "--state-dir",
        type=Path,
        default=Path("demo-state"),
        help="where the demo keeps its config, spool and outbox",
    )

    from gateway.emulator.cli import add_arguments  # noqa: PLC0415 - only for this command

    emulator = commands.add_parser("emulator", help="run the local Graph/Entra emulator")
    add_arguments(emulator)

    commands.add_parser("hash-password", help="hash a password for users[].password_hash")

    cert = commands.add_parser("cert", help="app certificates")
    cert_actions = cert.add_subparsers(dest="cert_action", metavar="ACTION", required=True)
    create = cert_actions.add_parser("create", help="write a self-signed certificate and key")
    create.add_argument("--out", type=Path, default=Path(), help="folder (default: here)")
    create.add_argument("--name", default="smtp-graph-gateway", help="file name stem")
    create.add_argument("--days", type=int, default=730, help="validity (default 730)")
    create.add_argument(
        "--password-file", type=Path, help="encrypt the key with the password in this file"
    )
    create.add_argument(
        "--server-name",
        action="append",
        default=[],
        metavar="NAME",
        help="make a TLS server certificate for the SMTP listeners, valid for this host name "
        "or address (repeat for more) instead of an app credential",
    )

    from gateway.queue_cli import add_arguments as add_queue_arguments  # noqa: PLC0415 - imported only for this command, so start-up stays light

    add_queue_arguments(commands.add_parser("queue", help="list and manage queued mail"))

    from gateway.db_cli import add_arguments as add_db_arguments  # noqa: PLC0415 - imported only for this command, so start-up stays light
    from gateway.migrate_cli import add_arguments as add_spool_arguments  # noqa: PLC0415 - imported only for this command, so start-up stays light

    add_db_arguments(commands.add_parser("db", help="the cluster's PostgreSQL database"))
    add_spool_arguments(commands.add_parser("spool", help="move a queue between backends"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `smtp-graph-gateway` and `python -m gateway`."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return _dispatch(args)
    except ConfigError as error:
        flush_logs()  # the log lines before it, then the error
        print(f"smtp-graph-gateway: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except GatewayError as error:
        flush_logs()
        print(f"smtp-graph-gateway: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE
    finally:
        flush_logs()


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "serve":
        config = load_config(args.config)
        _configure(config)
        from gateway.app import run  # noqa: PLC0415 - keeps `check` and `--help` light

        asyncio.run(run(config))
        return EXIT_OK
    if args.command == "check":
        return _check(args)
    if args.command == "login":
        return _login(args)
    if args.command == "demo":
        configure_logging("info", "auto")
        from gateway.demo import run_demo  # noqa: PLC0415 - imported only for this command, so start-up stays light

        asyncio.run(
            run_demo(
                args.state_dir.resolve(),
                smtp_port=args.smtp_port,
                console_port=args.console_port,
            )
        )
        return EXIT_OK
    if args.command == "emulator":
        configure_logging("info", "auto")
        from gateway.emulator.cli import run as run_emulator  # noqa: PLC0415 - imported only for this command, so start-up stays light

        return run_emulator(args)
    if args.command == "hash-password":
        return _hash_password()
    if args.command == "cert":
        from gateway.certs import create_certificate  # noqa: PLC0415 - imported only for this command, so start-up stays light

        password = None
        if args.password_file is not None:
            password = args.password_file.read_text(encoding="utf-8").strip()
        created = create_certificate(
            args.out.resolve(),
            args.name,
            days=args.days,
            key_password=password,
            server_names=tuple(args.server_name),
        )
        print(created.instructions())
        return EXIT_OK
    if args.command == "queue":
        from gateway.queue_cli import run as run_queue  # noqa: PLC0415 - imported only for this command, so start-up stays light

        configure_logging("warning", "auto")
        return run_queue(args)
    if args.command == "db":
        from gateway.db_cli import run as run_db  # noqa: PLC0415 - imported only for this command, so start-up stays light

        configure_logging("warning", "auto")
        return run_db(args)
    if args.command == "spool":
        from gateway.migrate_cli import run as run_migrate  # noqa: PLC0415 - imported only for this command, so start-up stays light

        configure_logging("warning", "auto")
        return run_migrate(args)
    raise AssertionError(args.command)


def _configure(config: Config) -> None:
    configure_logging(config.logging.level, config.logging.format)


def _check(args: argparse.Namespace) -> int:
    from gateway.checks import check_queue, check_tenant  # noqa: PLC0415 - only for this command
    from gateway.preflight import check_host, tenants_for_mailbox  # noqa: PLC0415 - same

    config = load_config(args.config)
    configure_logging("warning", "auto")
    tenants = [t for t in config.tenants if args.tenant in (None, t.name)]
    if not tenants:
        print(f"smtp-graph-gateway: no tenant named {args.tenant!r}", file=sys.stderr)
        return EXIT_USAGE
    if args.mailbox:  # only the tenants that deliver this mailbox's mail, never another's app
        serving = tenants_for_mailbox(config, args.mailbox)
        tenants = [t for t in serving if t in tenants]
        if not tenants:
            print(
                f"smtp-graph-gateway: no {'selected ' if args.tenant else ''}tenant serves "
                f"{args.mailbox}: add its domain to a tenant's domains (or routing)",
                file=sys.stderr,
            )
            return EXIT_FAILURE
    host = check_host(config)

    async def probe() -> tuple[Any, list[Any]]:
        queue = await check_queue(config.spool)
        return queue, [
            await check_tenant(
                tenant,
                timeout=config.delivery.token_timeout,
                proxy=config.proxy,
                mailbox=args.mailbox or "",
                # with --mailbox, one test message, through the tenant delivery tries first
                send_test=args.send_test if index == 0 or not args.mailbox else "",
            )
            for index, tenant in enumerate(tenants)
        ]

    queue, reports = asyncio.run(probe())
    if args.json:
        document = {
            "config": "ok",
            "warnings": [str(warning) for warning in config.warnings],
            "host": host.as_dict(),
            "queue": queue.as_dict() if queue else None,
            "tenants": [r.as_dict() for r in reports],
        }
        print(json.dumps(document, indent=2))
    else:
        count = len(config.warnings)
        print(
            f"config {args.config}: ok{f', {count} warning' + 's' * (count > 1) if count else ''}"
        )
        for warning in config.warnings:
            print(f"  WARN {warning}")
        machine = [host, queue] if queue else [host]
        for report in (*machine, *reports):
            print(
                f"{'' if any(report is m for m in machine) else 'tenant '}{report.tenant}: "
                f"{'ok' if report.ok else 'FAILED'}"
            )
            for check, result, detail in report.lines:
                print(f"  {check:<28} {result:<6} {detail}".rstrip())
    everything = [host, *([queue] if queue else []), *reports]
    return EXIT_OK if all(report.ok for report in everything) else EXIT_FAILURE


def _login(args: argparse.Namespace) -> int:
    from gateway.control import send_request  # noqa: PLC0415 - only for this command
    from gateway.entra.delegated import (  # noqa: PLC0415 - imported only for this command, so start-up stays light
        LoginError,
        browser_login,
        device_code_login,
    )

    config = load_config(args.config)
    configure_logging("warning", "auto")
    tenant = next((t for t in config.tenants if t.name == args.tenant), None)
    if tenant is None or not tenant.delegated:
        what = "no tenant" if tenant is None else "no delegated tenant (auth: delegated)"
        print(f"smtp-graph-gateway: {what} named {args.tenant!r}", file=sys.stderr)
        return EXIT_USAGE

    def show(text: str) -> None:
        print(text, flush=True)

    try:
        if args.browser:
            signed_in = browser_login(tenant, show=show, port=args.port, proxy=config.proxy)
        else:
            signed_in = device_code_login(tenant, show=show, proxy=config.proxy)
    except LoginError as error:
        flush_logs()
        print(f"smtp-graph-gateway: {error}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"signed in as {signed_in.username}; token cache written to {signed_in.cache}")
    # A running daemon reads the new cache at its next attempt; queued mail goes now.
    answer = send_request(config.spool.directory, {"operation": "retry", "queue_id": "all"})
    if answer is not None and answer.get("ok"):
        print(f"the running gateway retries {len(answer.get('retried', []))} queued message(s)")
    return EXIT_OK


def _hash_password() -> int:
    from gateway.passwords import hash_password  # noqa: PLC0415 - imported only for this command, so start-up stays light

    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Again: "):
            print("smtp-graph-gateway: the passwords differ", file=sys.stderr)
            return EXIT_USAGE
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("smtp-graph-gateway: empty password", file=sys.stderr)
        return EXIT_USAGE
    print(hash_password(password))
    return EXIT_OK
