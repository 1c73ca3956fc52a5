"""`smtp-graph-gateway check` explains what is wrong with an app registration, or says it is fine."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from gateway.emulator import EmulatorApp, EmulatorSettings, Faults, running_emulator
from tests.e2e.test_cli import run_cli
from tests.support.gateway import config_document, write_config

GOOD = EmulatorApp(
    tenant_id="contoso-tenant", client_id="contoso-app", client_secret="right-secret"
)
NO_CONSENT = EmulatorApp(
    tenant_id="contoso-tenant", client_id="no-consent-app", client_secret="right-secret", roles=()
)


async def check(
    tmp_path: Path,
    emulator,
    *args: str,
    client_id: str = "contoso-app",
    secret: str = "right-secret",
    **tenant: object,
):
    document = config_document(tmp_path, emulator)
    document["tenants"][0].update(client_id=client_id, client_secret=secret, **tenant)
    config = write_config(tmp_path, document)
    return await asyncio.to_thread(run_cli, "check", "--config", str(config), *args)


async def test_check_explains_each_problem_and_exits_1(tmp_path: Path) -> None:
    settings = EmulatorSettings(state_dir=tmp_path / "emu", apps=(GOOD, NO_CONSENT))
    async with running_emulator(settings) as emulator:
        emulator.set_faults(Faults(mailbox_errors={"blocked@contoso.com": "ErrorAccessDenied"}))

        fine = await check(tmp_path, emulator, "--mailbox", "scanner@contoso.com")
        assert fine.returncode == 0, fine.stdout
        assert "permissions" in fine.stdout and "Mail.Send (application) granted" in fine.stdout
        assert "the app may send as this mailbox" in fine.stdout
        assert emulator.delivered() == []  # the probe sends nothing

        blocked = await check(tmp_path, emulator, "--mailbox", "blocked@contoso.com")
        assert blocked.returncode == 1
        assert "ErrorAccessDenied" in blocked.stdout and "ApplicationAccessPolicy" in blocked.stdout

        consent = await check(tmp_path, emulator, client_id="no-consent-app")
        assert consent.returncode == 1
        assert "grant admin consent" in consent.stdout

        wrong = await check(tmp_path, emulator, secret="Wr0ngSecretValue")
        assert wrong.returncode == 1
        assert "AADSTS7000215" in wrong.stdout and "Secret ID" in wrong.stdout
        assert "Wr0ngSecretValue" not in wrong.stdout + wrong.stderr

        expiring = await check(tmp_path, emulator, "--json", client_secret_expires="2000-01-01")
        report = json.loads(expiring.stdout)["tenants"][0]
        assert report["ok"] is False
        assert report["checks"][0]["check"] == "client secret expiry"


async def test_check_sends_a_real_test_message(tmp_path: Path) -> None:
    settings = EmulatorSettings(state_dir=tmp_path / "emu", apps=(GOOD,))
    async with running_emulator(settings) as emulator:
        sent = await check(
            tmp_path,
            emulator,
            "--mailbox",
            "scanner@contoso.com",
            "--send-test",
            "admin@contoso.com",
        )
        assert sent.returncode == 0, sent.stdout
        [message] = emulator.delivered()
        assert message.mailbox == "scanner@contoso.com"
        assert message.recipients["to"] == ["admin@contoso.com"]


async def test_check_states_the_message_size_limit_and_what_raises_it(tmp_path: Path) -> None:
    both = EmulatorApp(
        tenant_id="contoso-tenant",
        client_id="readwrite-app",
        client_secret="right-secret",
        roles=("Mail.Send", "Mail.ReadWrite"),
    )
    settings = EmulatorSettings(state_dir=tmp_path / "emu", apps=(GOOD, both))
    async with running_emulator(settings) as emulator:
        plain = await check(tmp_path, emulator, "--json")
        [size] = [
            c
            for c in json.loads(plain.stdout)["tenants"][0]["checks"]
            if c["check"] == "message size"
        ]
        assert size["result"] == "ok" and "up to 2.9 MiB" in size["detail"]
        assert "large_messages: true" in size["detail"] and "Mail.ReadWrite" in size["detail"]

        missing = await check(tmp_path, emulator, large_messages=True)
        assert missing.returncode == 1  # the large path would fail: say so now
        assert "Mail.ReadWrite is not in the token's roles" in missing.stdout

        granted = await check(
            tmp_path,
            emulator,
            client_id="readwrite-app",
            large_messages=True,
            max_message_size="100MiB",
        )
        assert granted.returncode == 0, granted.stdout
        assert "up to 100 MiB" in granted.stdout
