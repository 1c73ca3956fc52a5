"""The `/_emulator/` control endpoints, and the command line run as a real process."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import smtplib
import ssl
import sys
from pathlib import Path

import pytest
import yaml

from gateway.emulator import Emulator
from gateway.emulator.cli import parse_listen
from tests.emulator.conftest import StartEmulator
from tests.emulator.helpers import (
    CLIENT,
    DEVICE_CODE_GRANT,
    MAILBOX,
    PUBLIC_CLIENT,
    SECRET,
    SMTP_SEND,
    TENANT,
    bearer,
    get_token,
    graph_client,
    json_message,
)

REPO = Path(__file__).resolve().parents[2]


async def test_a_long_running_emulator_keeps_the_last_messages_and_every_file(
    start_emulator: StartEmulator,
) -> None:
    emulator = await start_emulator(keep_messages=2)
    async with graph_client(emulator) as http:
        token = await get_token(http, emulator)
        for n in range(3):
            async with http.post(
                f"{emulator.graph_endpoint}/users/{MAILBOX}/sendMail",
                json={"message": json_message(subject=f"scan {n}")},
                headers=bearer(token),
            ) as response:
                assert response.status == 202
        async with http.get(f"{emulator.base_url}/_emulator/outbox") as response:
            listed = await response.json()
        assert [entry["subject"] for entry in listed] == ["scan 1", "scan 2"]
        assert [m.seq for m in emulator.delivered()] == [2, 3]
        assert len(list(emulator.outbox_dir.glob("*.eml"))) == 3  # the first one's too
        async with http.post(f"{emulator.base_url}/_emulator/reset") as response:
            assert response.status == 204
    assert list(emulator.outbox_dir.iterdir()) == []  # reset removes every file it wrote


async def test_admin_endpoints(emulator: Emulator) -> None:
    assert list(emulator.outbox_dir.iterdir()) == []  # exists, empty, before any delivery
    admin = f"{emulator.base_url}/_emulator"
    async with graph_client(emulator) as http:
        token = await get_token(http, emulator)
        async with http.put(f"{admin}/faults", json={"throttle_count": 1}) as response:
            assert response.status == 200
            assert (await response.json())["remaining"]["throttle_count"] == 1
        for expected in (429, 202):
            async with http.post(
                f"{emulator.graph_endpoint}/users/{MAILBOX}/sendMail",
                json={"message": json_message()},
                headers=bearer(token),
            ) as response:
                assert response.status == expected

        async with http.get(f"{admin}/outbox") as response:
            [entry] = await response.json()
        assert entry["mailbox"] == MAILBOX
        assert entry["recipients"]["to"] == ["alice@example.com"]
        async with http.get(f"{admin}/outbox/{entry['id']}.eml") as response:
            assert response.content_type == "message/rfc822"
            assert await response.read() == emulator.delivered()[0].mime
        async with http.get(f"{admin}/stats") as response:
            stats = await response.json()
        assert stats["by_status"] == {"202": 1, "429": 1}
        assert stats["token_requests"] == 1
        async with http.get(f"{admin}/faults") as response:
            assert (await response.json())["remaining"]["throttle_count"] == 0
        async with http.put(f"{admin}/faults", json={"throttle_rate": 3}) as response:
            assert response.status == 400
            assert "between 0 and 1" in (await response.json())["error"]

        async with http.post(f"{admin}/reset") as response:
            assert response.status == 204
        async with http.get(f"{admin}/outbox") as response:
            assert await response.json() == []
        async with http.get(f"{admin}/outbox/{entry['id']}.eml") as response:
            assert response.status == 404
    assert emulator.delivered() == []
    assert emulator.stats.graph_requests == 0
    assert emulator.stats.max_concurrency == 0
    assert list(emulator.outbox_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8443", ("127.0.0.1", 8443)),
        ("[::1]:0", ("::1", 0)),
        ("localhost:9000", ("localhost", 9000)),
    ],
)
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["8443", "::1:8443", "host:port", "h:70000", "[::1:80"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_listen(text)


async def start_cli(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.emulator.cli",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)},
    )


async def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    apps = tmp_path / "apps.yaml"
    (tmp_path / "secret").write_text(SECRET + "\n")
    apps.write_text(
        yaml.safe_dump(
            [
                {
                    "tenant_id": TENANT,
                    "client_id": CLIENT,
                    "client_secret_file": "secret",
                    "roles": ["Mail.Send"],
                },
            ]
        )
    )
    faults = tmp_path / "faults.json"
    faults.write_text('{"throttle_count": 1, "throttle_retry_after": 0}')
    state, ca_out = tmp_path / "state", tmp_path / "out" / "ca.pem"
    process = await start_cli(
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        str(state),
        "--apps",
        str(apps),
        "--faults",
        str(faults),
        "--ca-out",
        str(ca_out),
    )
    try:
        assert process.stdout is not None
        printed: dict[str, str] = {}
        async with asyncio.timeout(20):
            while "admin" not in printed:
                line = (await process.stdout.readline()).decode()
                assert line, "the emulator exited before it was ready"
                key, sep, value = line.strip().partition(": ")
                if sep:
                    printed[key.strip()] = value.strip()
        graph = printed["graph endpoint"]
        assert graph.startswith("https://127.0.0.1:") and not graph.startswith(
            "https://127.0.0.1:0/"
        )
        assert printed["CA file"] == str(state / "ca.pem")
        assert ca_out.read_bytes() == (state / "ca.pem").read_bytes()
        assert printed["outbox"] == str(state / "outbox")

        emulator = _Remote(printed["login endpoint"], state / "ca.pem")
        async with graph_client(emulator) as http:
            token = await get_token(http, emulator)
            statuses = []
            for _ in range(2):
                async with http.post(
                    f"{graph}/users/{MAILBOX}/sendMail",
                    json={"message": json_message()},
                    headers=bearer(token),
                ) as response:
                    statuses.append(response.status)
        assert statuses == [429, 202]
        assert len(list((state / "outbox").glob("*.eml"))) == 1

        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            rest = await process.stdout.read()
            code = await process.wait()
        assert code == 0
        assert b"emulator stopped" in rest
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def read_ready(process: asyncio.subprocess.Process) -> dict[str, str]:
    """The `key: value` lines the CLI prints up to `admin:` (it is then serving)."""
    assert process.stdout is not None
    printed: dict[str, str] = {}
    async with asyncio.timeout(20):
        while "admin" not in printed:
            line = (await process.stdout.readline()).decode()
            assert line, "the emulator exited before it was ready"
            key, sep, value = line.strip().partition(": ")
            if sep:
                printed[key.strip()] = value.strip()
    return printed


async def stop_cli(process: asyncio.subprocess.Process) -> None:
    process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(20):
        await process.communicate()
    assert process.returncode == 0


async def test_cli_smtp_listener_and_users(tmp_path: Path) -> None:
    apps = tmp_path / "apps.yaml"
    apps.write_text(
        yaml.safe_dump(
            {
                "apps": [{"tenant_id": TENANT, "client_id": PUBLIC_CLIENT}],
                "users": [{"username": "carol@contoso.com", "tenant_id": TENANT}],
            }
        )
    )
    state = tmp_path / "state"
    process = await start_cli(
        "--listen", "127.0.0.1:0", "--state-dir", str(state), "--apps", str(apps),
        "--smtp-listen", "127.0.0.1:0", "--user", "bob@outlook.com=consumers",
        "--device-code-interval", "0", "--device-code-polls", "0",
    )  # fmt: skip
    try:
        printed = await read_ready(process)
        assert printed["users"] == "2 configured (carol@contoso.com, bob@outlook.com)"
        smtp_endpoint, _, extras = printed["smtp endpoint"].partition(" ")
        assert extras == "(STARTTLS, AUTH XOAUTH2)"
        host, _, port = smtp_endpoint.rpartition(":")
        assert host == "127.0.0.1" and int(port) > 0

        emulator = _Remote(printed["login endpoint"], state / "ca.pem")
        base = f"{emulator.login_endpoint}/{TENANT}/oauth2/v2.0"
        async with graph_client(emulator) as http:
            async with http.post(
                f"{base}/devicecode", data={"client_id": PUBLIC_CLIENT, "scope": SMTP_SEND}
            ) as response:
                flow = await response.json()
            form = {
                "grant_type": DEVICE_CODE_GRANT,
                "client_id": PUBLIC_CLIENT,
                "device_code": flow["device_code"],
            }
            async with http.post(f"{base}/token", data=form) as response:
                token = (await response.json())["access_token"]  # approved on the first poll

        def send() -> tuple[int, bytes]:
            with smtplib.SMTP(host, int(port), timeout=10) as client:
                client.starttls(context=ssl.create_default_context(cafile=emulator.ca_file))
                client.ehlo()  # RFC 3207: the session starts over after STARTTLS
                sasl = f"user=carol@contoso.com\x01auth=Bearer {token}\x01\x01"
                answer = client.docmd("AUTH", "XOAUTH2 " + base64.b64encode(sasl.encode()).decode())
                client.sendmail(
                    "carol@contoso.com", ["rita@example.com"], b"Subject: hi\r\n\r\nhello\r\n"
                )
                return answer

        assert (await asyncio.to_thread(send))[0] == 235
        [metadata] = [json.loads(p.read_text()) for p in (state / "outbox").glob("*.json")]
        assert (metadata["mode"], metadata["mailbox"]) == ("smtp", "carol@contoso.com")
        assert metadata["recipients"] == {"to": [], "cc": [], "bcc": ["rita@example.com"]}
        await stop_cli(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_cli_refuses_a_bad_apps_file_with_exit_78(tmp_path: Path) -> None:
    apps = tmp_path / "apps.yaml"
    apps.write_text("- {tenant_id: t}\n")
    process = await start_cli(
        "--listen", "127.0.0.1:0", "--state-dir", str(tmp_path), "--apps", str(apps)
    )
    async with asyncio.timeout(20):
        _, stderr = await process.communicate()
    assert process.returncode == 78
    assert b"apps[0]: tenant_id and client_id are required strings" in stderr


class _Remote:
    """Just enough of Emulator's interface for the helpers to talk to the CLI's process."""

    def __init__(self, login_endpoint: str, ca_file: Path) -> None:
        self.login_endpoint = login_endpoint
        self.ca_file = ca_file
