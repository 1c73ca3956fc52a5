"""`check` and delivery say which of ErrorAccessDenied's two causes it is, and `check
--mailbox` touches only the tenant that serves the mailbox (issue #19)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.config import load_config
from gateway.emulator import Emulator, EmulatorApp, EmulatorSettings, Faults, running_emulator
from tests.conftest import Logged
from tests.e2e.test_cli import run_cli
from tests.e2e.test_pipeline import MESSAGE
from tests.support.gateway import config_document, run_gateway, write_config

CONTOSO = EmulatorApp(
    tenant_id="contoso-tenant", client_id="contoso-app", client_secret="right-secret"
)
FABRIKAM = EmulatorApp(
    tenant_id="fabrikam-tenant", client_id="fabrikam-app", client_secret="right-secret"
)
NO_CONSENT = EmulatorApp(
    tenant_id="contoso-tenant", client_id="no-consent-app", client_secret="right-secret", roles=()
)
GRAPH_SAYS = "(Graph: Access to OData is disabled.)"


def two_tenants(tmp_path: Path, emulator: Emulator) -> Path:
    document = config_document(tmp_path, emulator)
    contoso = {**document["tenants"][0], "client_secret": "right-secret"}
    fabrikam = {
        **contoso,
        "name": "fabrikam",
        "tenant_id": "fabrikam-tenant",
        "client_id": "fabrikam-app",
        "domains": ["fabrikam.com"],
    }
    document["tenants"] = [contoso, fabrikam]
    return write_config(tmp_path, document)


async def test_check_mailbox_and_send_test_use_only_the_tenant_that_serves_it(
    tmp_path: Path,
) -> None:
    """A test message for a contoso mailbox went out through fabrikam's app too."""
    settings = EmulatorSettings(state_dir=tmp_path / "emu", apps=(CONTOSO, FABRIKAM))
    async with running_emulator(settings) as emulator:
        config = two_tenants(tmp_path, emulator)
        result = await asyncio.to_thread(
            run_cli,
            "check",
            "--config",
            str(config),
            "--mailbox",
            "scanner@contoso.com",
            "--send-test",
            "admin@contoso.com",
        )
        assert result.returncode == 0, result.stdout
        assert "tenant contoso: ok" in result.stdout
        assert "tenant fabrikam" not in result.stdout
        assert emulator.stats.token_requests == 1  # fabrikam's app was never asked
        [message] = emulator.delivered()
        assert (message.client_id, message.mailbox) == ("contoso-app", "scanner@contoso.com")
        assert {r.mailbox for r in emulator.stats.requests} == {"scanner@contoso.com"}

        emulator.stats.clear()
        nobody = await asyncio.to_thread(
            run_cli, "check", "--config", str(config), "--mailbox", "x@northwind.com"
        )
        assert nobody.returncode == 1
        assert "no tenant serves x@northwind.com" in nobody.stderr
        assert emulator.stats.token_requests == 0

        # Without --mailbox, every tenant is checked as before.
        every = await asyncio.to_thread(run_cli, "check", "--config", str(config))
        assert every.returncode == 0, every.stdout
        assert "tenant contoso: ok" in every.stdout and "tenant fabrikam: ok" in every.stdout


async def check_mailbox(tmp_path: Path, emulator: Emulator, client_id: str, mailbox: str):
    document = config_document(tmp_path, emulator)
    document["tenants"][0].update(client_id=client_id, client_secret="right-secret")
    config = write_config(tmp_path, document)
    return await asyncio.to_thread(run_cli, "check", "--config", str(config), "--mailbox", mailbox)


async def test_check_names_the_cause_of_access_denied_from_the_token_roles(
    tmp_path: Path,
) -> None:
    settings = EmulatorSettings(state_dir=tmp_path / "emu", apps=(CONTOSO, NO_CONSENT))
    async with running_emulator(settings) as emulator:
        emulator.set_faults(Faults(mailbox_errors={"blocked@contoso.com": "ErrorAccessDenied"}))

        # The role is there: the mailbox is outside the policy's or RBAC scope.
        scoped = await check_mailbox(tmp_path, emulator, "contoso-app", "blocked@contoso.com")
        assert scoped.returncode == 1
        [line] = [line for line in scoped.stdout.splitlines() if "mailbox blocked@" in line]
        assert "HTTP 403 ErrorAccessDenied: the token has Mail.Send, so an " in line
        assert "ApplicationAccessPolicy or an RBAC for Applications scope" in line
        assert "leaves mailbox blocked@contoso.com out" in line
        assert "admin consent" not in line  # not the other cause
        assert line.endswith(GRAPH_SAYS)

        # The role is missing: consent, not the scope.
        unconsented = await check_mailbox(
            tmp_path, emulator, "no-consent-app", "scanner@contoso.com"
        )
        assert unconsented.returncode == 1
        [line] = [line for line in unconsented.stdout.splitlines() if "mailbox scanner@" in line]
        assert "ErrorAccessDenied: the token has no Mail.Send permission (it has: none)" in line
        assert "grant admin consent" in line and "ApplicationAccessPolicy" not in line
        assert line.endswith("(Graph: Access is denied. Check credentials and try again.)")


async def test_delivery_logs_the_cause_of_access_denied_and_missing_roles_once(
    tmp_path: Path, logged: Logged
) -> None:
    settings = EmulatorSettings(state_dir=tmp_path / "emu", apps=(NO_CONSENT,))
    async with running_emulator(settings) as emulator:
        document = config_document(
            tmp_path, emulator, delivery={"retry_initial": "1s", "retry_max": "1s"}
        )
        document["tenants"][0].update(client_id="no-consent-app", client_secret="right-secret")
        async with run_gateway(load_config(write_config(tmp_path, document))) as gateway:
            assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE) == {}
            for _ in range(2):  # two attempts, one token
                event = await gateway.next_event(accept=lambda e: e.result == "deferred")
                assert event.code == "ErrorAccessDenied"
    [missing] = logged("token_roles_missing")  # once, however many attempts
    assert missing["tenant"] == "contoso" and missing["missing"] == ["Mail.Send"]
    assert "grant admin consent" in missing["action"]
    denied = logged("access_denied")
    assert len(denied) >= 2
    assert denied[0]["mailbox"] == "scanner@contoso.com"
    assert denied[0]["reason"].startswith("the token has no Mail.Send permission (it has: none)")
    assert denied[0]["reason"].endswith(
        "(Graph: Access is denied. Check credentials and try again.)"
    )
