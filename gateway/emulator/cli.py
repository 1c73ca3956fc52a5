"""`smtp-graph-gateway emulator`: run the Entra/Graph stand-in from the command line.

`add_arguments` fills a subcommand's parser and `run` serves until SIGINT or SIGTERM, then
returns 0; 78 (EX_CONFIG, as the main command) if an apps/faults file is unusable, 1 if the
address cannot be bound. It never exits the process itself. `python -m gateway.emulator.cli …`
runs it standalone. It prints where everything is, for example:

    emulator ready
      login endpoint: https://127.0.0.1:8443
      graph endpoint: https://127.0.0.1:8443/v1.0
      smtp endpoint:  127.0.0.1:2587 (STARTTLS, AUTH XOAUTH2)     (with --smtp-listen)
      CA file:        /tmp/graph-emulator-x1y2/ca.pem
      outbox:         /tmp/graph-emulator-x1y2/outbox
      apps:           open (any tenant, client id and credential)
      users:          any username
      managed identity: IDENTITY_ENDPOINT=https://127.0.0.1:8443/msi/token IDENTITY_HEADER=…
      oidc issuer:    https://127.0.0.1:8443/oidc/k8s (tokens: POST /_emulator/oidc/k8s/token)
      admin:          https://127.0.0.1:8443/_emulator/outbox

Users who can sign in (device code, authorization code) come from the `users` list of the
`--apps` YAML and from `--user alice@contoso.com=TENANT` (TENANT `consumers` for a personal
Microsoft account); with none, any username signs in. The machine's managed identities come
from its `managed_identities` list; the printed IDENTITY_ENDPOINT and IDENTITY_HEADER point
msal (and so the gateway) at them.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

import yaml

from gateway.emulator.faults import Faults
from gateway.emulator.server import Emulator
from gateway.emulator.settings import (
    KEEP_MESSAGES,
    EmulatorApp,
    EmulatorSettings,
    EmulatorUser,
    load_apps,
    load_managed_identities,
    load_users,
)

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 78


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT` or `[IPv6]:PORT` → (host, port)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    if host.startswith("["):
        if not host.endswith("]"):
            raise argparse.ArgumentTypeError(f"unbalanced brackets in {value!r}")
        host = host[1:-1]
    elif ":" in host:
        raise argparse.ArgumentTypeError(f"write IPv6 addresses in brackets: [{host}]:{port_text}")
    try:
        port = int(port_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {port_text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {port}")
    return host, port


def parse_user(value: str) -> EmulatorUser:
    """`USERNAME=TENANT` → an EmulatorUser (TENANT `consumers`: a personal Microsoft account)."""
    username, sep, tenant = value.partition("=")
    if not sep or not username or not tenant:
        raise argparse.ArgumentTypeError(
            f"expected USERNAME=TENANT (e.g. alice@contoso.com=contoso-tenant), got {value!r}"
        )
    try:
        return EmulatorUser(username=username, tenant_id=tenant)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _polls(value: str) -> int | None:
    if value == "manual":
        return None
    polls = int(value)
    if polls < 0:
        raise argparse.ArgumentTypeError(f"a number of polls is not negative: {value}")
    return polls


def _rate(value: str) -> float:
    rate = float(value)
    if not 0.0 <= rate <= 1.0:
        raise argparse.ArgumentTypeError(f"a rate is between 0 and 1, not {value}")
    return rate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen",
        type=parse_listen,
        default=("127.0.0.1", 8443),
        metavar="HOST:PORT",
        help="address to serve HTTPS on (default 127.0.0.1:8443; port 0 picks a free port; "
        "IPv6 as [::1]:8443)",
    )
    parser.add_argument("--ca-out", type=Path, metavar="FILE", help="also write the CA PEM here")
    parser.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="where the CA, server key and outbox/ live (default: a new temporary directory)",
    )
    parser.add_argument(
        "--apps",
        type=Path,
        metavar="FILE",
        help="YAML list of app registrations (tenant_id, client_id, client_secret or "
        "certificate_file or federated_credentials, roles, public_client, other_tenants), or a "
        "mapping with 'apps', 'users' (username, tenant_id) and 'managed_identities' "
        "(tenant_id, client_id, system_assigned, roles) lists; without apps any tenant and "
        "credentials are accepted",
    )
    parser.add_argument("--faults", type=Path, metavar="FILE", help="YAML/JSON fault settings")
    parser.add_argument("--latency", type=int, metavar="MS", help="added to every Graph request")
    parser.add_argument(
        "--throttle-rate", type=_rate, metavar="R", help="probability of a 429 per Graph request"
    )
    parser.add_argument(
        "--throttle-retry-after", type=int, metavar="S", help="Retry-After of throttled answers"
    )
    parser.add_argument(
        "--unavailable-rate", type=_rate, metavar="R", help="probability of a 503 per request"
    )
    parser.add_argument("--seed", type=int, help="seed for the fault rates (reproducible runs)")
    parser.add_argument(
        "--token-lifetime", type=int, default=3599, metavar="S", help="expires_in of tokens"
    )
    parser.add_argument(
        "--smtp-listen",
        type=parse_listen,
        metavar="HOST:PORT",
        help="also serve SMTP submission like smtp.office365.com:587 (STARTTLS, AUTH XOAUTH2); "
        "port 0 picks a free port",
    )
    parser.add_argument(
        "--user",
        dest="users",
        type=parse_user,
        action="append",
        default=[],
        metavar="USERNAME=TENANT",
        help="a user who can sign in (repeatable; TENANT 'consumers' for a personal Microsoft "
        "account); added to the apps file's users",
    )
    parser.add_argument(
        "--device-code-interval",
        type=int,
        default=5,
        metavar="S",
        help="polling interval device-code clients are told (default 5; 0 for tests)",
    )
    parser.add_argument(
        "--keep-messages",
        type=int,
        default=KEEP_MESSAGES,
        metavar="N",
        help=f"delivered messages kept in memory for the admin API (default {KEEP_MESSAGES}); "
        "every one stays in the outbox directory",
    )
    parser.add_argument(
        "--device-code-polls",
        type=_polls,
        default=1,
        metavar="N|manual",
        help="polls answered authorization_pending before a device code is approved "
        "automatically (default 1); 'manual': only POST /_emulator/devicecodes/CODE/approve",
    )


def settings_from_args(args: argparse.Namespace) -> EmulatorSettings:
    """Build the settings; ValueError/TypeError/OSError name what is wrong."""
    host, port = args.listen
    smtp_listen: tuple[str, int] | None = args.smtp_listen
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="graph-emulator-"))
    apps: tuple[EmulatorApp, ...] = load_apps(args.apps) if args.apps else ()
    users = (*(load_users(args.apps) if args.apps else ()), *args.users)
    fault_data: dict[str, Any] = {}
    if args.faults:
        loaded = yaml.safe_load(args.faults.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise TypeError(f"{args.faults}: expected a mapping of fault settings")
        fault_data.update(loaded)
    for option, key in (
        ("latency", "latency_ms"),
        ("throttle_rate", "throttle_rate"),
        ("throttle_retry_after", "throttle_retry_after"),
        ("unavailable_rate", "unavailable_rate"),
        ("seed", "seed"),
    ):
        value = getattr(args, option, None)
        if value is not None:
            fault_data[key] = value
    return EmulatorSettings(
        host=host,
        port=port,
        state_dir=state_dir,
        ca_out=args.ca_out,
        apps=apps,
        users=tuple(users),
        faults=Faults.from_mapping(fault_data),
        token_lifetime=args.token_lifetime,
        device_code_interval=args.device_code_interval,
        device_code_pending_polls=args.device_code_polls,
        smtp_host=smtp_listen[0] if smtp_listen else None,
        smtp_port=smtp_listen[1] if smtp_listen else None,
        keep_messages=args.keep_messages,
        managed_identities=load_managed_identities(args.apps) if args.apps else (),
    )


def run(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Serve until SIGINT/SIGTERM; 0 on a clean stop, 78 for bad files, 1 if it cannot bind."""
    out = out or sys.stdout
    try:
        settings = settings_from_args(args)
    except (ValueError, TypeError, OSError, yaml.YAMLError) as exc:
        print(f"emulator: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return asyncio.run(_serve(settings, out))


async def _serve(settings: EmulatorSettings, out: TextIO) -> int:
    emulator = Emulator(settings)
    try:
        await emulator.start()
    except OSError as exc:
        where = f"{settings.host}:{settings.port}"
        if settings.smtp_port is not None:
            where += f" (SMTP {settings.smtp_host or settings.host}:{settings.smtp_port})"
        print(f"emulator: cannot listen on {where}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        mode = (
            "open (any tenant, client id and credential)"
            if settings.open_mode
            else (f"{len(settings.apps)} registered app(s)")
        )
        smtp = ""
        if settings.smtp_port is not None:
            smtp_host, smtp_port = emulator.smtp_address
            shown = f"[{smtp_host}]" if ":" in smtp_host else smtp_host
            smtp = f"  smtp endpoint:  {shown}:{smtp_port} (STARTTLS, AUTH XOAUTH2)\n"
        identity_environment = " ".join(
            f"{name}={value}" for name, value in emulator.managed_identity_environment().items()
        )
        users = (
            f"{len(settings.users)} configured ({', '.join(u.username for u in settings.users)})"
            if settings.users
            else "any username"
        )
        print(
            "emulator ready\n"
            f"  login endpoint: {emulator.login_endpoint}\n"
            f"  graph endpoint: {emulator.graph_endpoint}\n"
            f"{smtp}"
            f"  CA file:        {emulator.ca_file}\n"
            f"  outbox:         {emulator.outbox_dir}\n"
            f"  apps:           {mode}\n"
            f"  users:          {users}\n"
            f"  managed identity: {identity_environment} "
            f"({len(settings.managed_identities)} configured)\n"
            f"  oidc issuer:    {emulator.oidc_issuer()} (tokens: POST "
            "/_emulator/oidc/k8s/token)\n"
            f"  admin:          {emulator.base_url}/_emulator/outbox",
            file=out,
            flush=True,
        )
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await emulator.stop()
    print("emulator stopped", file=out, flush=True)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.emulator.cli",
        description="Local HTTPS stand-in for Entra ID and Microsoft Graph mail.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
