"""`smtp-graph-gateway demo`: the gateway and the Graph emulator together, on loopback.

No Microsoft account is needed. The demo writes a real configuration file into its state
folder (so it can be read and copied), starts the emulator on a free port, starts the gateway
with that configuration, prints how to send a test message and where it will appear, and
stops both cleanly on Ctrl-C or SIGTERM.

The operator console runs too, on loopback, with one operator whose password is made anew at
every start and printed once (the configuration keeps only its scrypt hash), and a link that
signs in once.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
from pathlib import Path

import yaml

from gateway.app import Gateway
from gateway.config import load_config
from gateway.emulator import Emulator, EmulatorSettings
from gateway.emulator.settings import KEEP_MESSAGES
from gateway.passwords import hash_password

DEMO_TENANT_ID = "00000000-0000-4000-8000-00000000de70"
DEMO_CLIENT_ID = "00000000-0000-4000-8000-0000000c11e7"
DEMO_DOMAIN = "example.com"
CONSOLE_USER = "admin"


def demo_config(
    state_dir: Path,
    *,
    smtp_port: int,
    emulator: Emulator,
    console_port: int = 8026,
    console_hash: str = "",
) -> dict[str, object]:
    """The gateway configuration the demo runs with."""
    return {
        "smtp": {
            "hostname": "localhost",
            "listeners": [{"name": "demo", "address": "127.0.0.1", "port": smtp_port}],
            "max_message_size": "3MB",  # what one Graph MIME request carries
        },
        "clients": [
            {
                "name": "this-machine",
                "networks": ["127.0.0.0/8", "::1"],
                "senders": [f"*@{DEMO_DOMAIN}"],
            }
        ],
        "tenants": [
            {
                "name": "demo",
                # GUID-shaped like real IDs, so the demo's config draws no warnings.
                "tenant_id": DEMO_TENANT_ID,
                "client_id": DEMO_CLIENT_ID,
                "client_secret": "demo-secret-not-used-by-microsoft",
                "domains": [DEMO_DOMAIN],
                "login_endpoint": emulator.login_endpoint,
                "graph_endpoint": emulator.graph_endpoint,
                "ca_file": str(emulator.ca_file),
            }
        ],
        "spool": {"directory": str(state_dir / "spool")},
        "delivery": {"retry_initial": "5s", "retry_max": "1m"},
        "shutdown": {"drain_timeout": "10s"},
        **(
            {
                "console": {
                    "listen": f"127.0.0.1:{console_port}",
                    "users": [
                        {
                            "username": CONSOLE_USER,
                            "password_hash": console_hash,
                            "role": "operator",
                        }
                    ],
                }
            }
            if console_hash
            else {}
        ),
    }


def instructions(
    host: str,
    port: int,
    outbox: Path,
    config_file: Path,
    console: tuple[str, str, str] | None = None,
) -> str:
    """What the demo prints once everything runs (`console`: its URL, this run's password and
    a one-time sign-in link)."""
    sender, recipient = f"scanner@{DEMO_DOMAIN}", f"alice@{DEMO_DOMAIN}"
    one_liner = (
        f"python3 -c \"import smtplib; smtplib.SMTP('{host}', {port}).sendmail("
        f"'{sender}', ['{recipient}'], "
        "b'Subject: demo\\r\\n\\r\\nHello from the gateway\\r\\n')\""
    )
    return "\n".join(
        [
            "",
            "smtp-graph-gateway demo is running (Graph is a local emulator; no Microsoft account).",
            f"  SMTP listener:  {host}:{port}  (any sender @{DEMO_DOMAIN}, from this machine)",
            f"  configuration:  {config_file}",
            f"  delivered mail: {outbox}  (.eml and .json per message)",
            *(
                [
                    f"  console:        {console[0]}  (sign in as {CONSOLE_USER}, password "
                    f"{console[1]}: made for this run only)",
                    f"  or open once:   {console[2]}",
                ]
                if console
                else []
            ),
            "",
            "Send a test message with swaks:",
            f"  swaks --server {host}:{port} --from scanner@{DEMO_DOMAIN} --to alice@{DEMO_DOMAIN}"
            " --header 'Subject: demo'",
            "or with Python:",
            f"  {one_liner}",
            "",
            "Press Ctrl-C to stop.",
            "",
        ]
    )


async def run_demo(state_dir: Path, *, smtp_port: int, console_port: int = 8026) -> None:
    """Run the demo until Ctrl-C or SIGTERM."""
    await asyncio.to_thread(state_dir.mkdir, parents=True, exist_ok=True)
    emulator = Emulator(
        EmulatorSettings(
            host="127.0.0.1", port=0, state_dir=state_dir / "emulator", keep_messages=KEEP_MESSAGES
        )
    )
    await emulator.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        config_file = state_dir / "gateway.yaml"
        password = secrets.token_urlsafe(12)
        document = demo_config(
            state_dir,
            smtp_port=smtp_port,
            emulator=emulator,
            console_port=console_port,
            console_hash=await asyncio.to_thread(hash_password, password),
        )
        text = "# Written by `smtp-graph-gateway demo`.\n" + yaml.safe_dump(
            document, sort_keys=False
        )
        await asyncio.to_thread(config_file.write_text, text)
        gateway = Gateway(load_config(config_file))
        await gateway.startup()
        try:
            assert gateway.listeners is not None
            host, port = gateway.listeners.address("demo")
            assert gateway.console is not None
            link = gateway.console.one_time_link(CONSOLE_USER, "operator")
            console = (f"http://127.0.0.1:{gateway.console.port}/", password, link)
            print(instructions(host, port, emulator.outbox_dir, config_file, console), flush=True)
            await stop.wait()
        finally:
            await gateway.shutdown()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await emulator.stop()
