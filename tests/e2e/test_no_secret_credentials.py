"""Credentials with nothing to expire, as an administrator meets them: what `check` says for a
federated token file and a managed identity (alone, or as an app's credential in another
tenant), and a running gateway that delivers with them, counts their failures and reports them
in /readyz — with no assertion or token in any output."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_config
from gateway.emulator import (
    Emulator,
    EmulatorApp,
    EmulatorManagedIdentity,
    EmulatorSettings,
    FederatedCredential,
    running_emulator,
)
from tests.conftest import JWT
from tests.e2e.test_cli import run_cli
from tests.e2e.test_operations import HTTP, get, sample
from tests.e2e.test_pipeline import MESSAGE
from tests.support.gateway import config_document, run_gateway, write_config

TENANT = "contoso-tenant"
RESOURCE_TENANT = "fabrikam-tenant"
SUBJECT = "system:serviceaccount:mail:smtp-graph-gateway"
IDENTITY_HEADER = "identity-header-not-for-logs"
SYSTEM = EmulatorManagedIdentity(
    TENANT, "5a5a5a5a-0000-1111-2222-333333333333", system_assigned=True
)
USER = EmulatorManagedIdentity(TENANT, "6b6b6b6b-0000-1111-2222-333333333333", roles=())
APPS = (
    EmulatorApp(
        TENANT,
        "wif-app",
        federated_credentials=(FederatedCredential("{emulator}/oidc/k8s", SUBJECT),),
    ),
    EmulatorApp(
        TENANT,
        "mi-app",
        federated_credentials=(FederatedCredential(f"{{emulator}}/{TENANT}/v2.0", USER.object_id),),
        other_tenants=(RESOURCE_TENANT,),
    ),
)


@pytest.fixture
async def emulator(tmp_path: Path) -> AsyncIterator[Emulator]:
    settings = EmulatorSettings(
        state_dir=tmp_path / "emu",
        apps=APPS,
        managed_identities=(SYSTEM, USER),
        identity_header=IDENTITY_HEADER,
    )
    async with running_emulator(settings) as running:
        yield running


def use_endpoint(emulator: Emulator, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """Point msal (in this process and in the CLI's) at the emulator's identity endpoint."""
    for name, value in emulator.managed_identity_environment(kind).items():
        monkeypatch.setenv(name, value)


def tenant_document(tmp_path: Path, emulator: Emulator, **credential: Any) -> dict[str, Any]:
    """The test config with the tenant's secret replaced by `credential`."""
    document = config_document(tmp_path, emulator)
    tenant = document["tenants"][0]
    del tenant["client_secret"]
    tenant.update(credential)
    for key, value in list(tenant.items()):
        if value is None:
            del tenant[key]
    return document


async def check(
    tmp_path: Path, emulator: Emulator, *args: str, **credential: Any
) -> subprocess.CompletedProcess[str]:
    config = write_config(tmp_path, tenant_document(tmp_path, emulator, **credential))
    result = await asyncio.to_thread(run_cli, "check", "--config", str(config), *args)
    assert not JWT.search(result.stdout + result.stderr), "a token was printed"
    return result


def line(output: str, check_name: str) -> str:
    """The `check` output line of one check: `  NAME  RESULT  DETAIL`."""
    found = [ln.strip() for ln in output.splitlines() if ln.strip().startswith(check_name + " ")]
    assert found, f"no {check_name!r} line in:\n{output}"
    return re.sub(r"\s+", " ", found[0])


async def test_check_shows_the_token_file_and_what_the_app_trusts(
    tmp_path: Path, emulator: Emulator
) -> None:
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text(emulator.mint_service_account_token(SUBJECT))
    result = await check(
        tmp_path, emulator, client_id="wif-app", federated_token_file=str(token_file)
    )
    assert result.returncode == 0, result.stdout
    issuer = emulator.oidc_issuer("k8s")
    credential = line(result.stdout, "credential")
    assert credential.startswith(
        f"credential ok federated token file {token_file}: issuer {issuer}, subject {SUBJECT}, "
        "audience api://AzureADTokenExchange, expires "
    )
    assert "(in 59 min)" in credential or "(in 60 min)" in credential
    assert credential.endswith(
        "re-read for every token request, nothing to expire, no expiry warning needed"
    )
    assert line(result.stdout, "token").endswith("with a federated token file")
    assert line(result.stdout, "federated credential") == (
        f"federated credential ok app wif-app trusts issuer {issuer}, subject {SUBJECT}, "
        "audience api://AzureADTokenExchange"
    )
    assert "Mail.Send (application) granted" in result.stdout


async def test_check_explains_a_subject_the_app_does_not_trust(
    tmp_path: Path, emulator: Emulator
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(emulator.mint_service_account_token("system:serviceaccount:mail:other"))
    result = await check(
        tmp_path, emulator, client_id="wif-app", federated_token_file=str(token_file)
    )
    assert result.returncode == 1
    token = line(result.stdout, "token")
    assert token.startswith("token FAILED AADSTS700213: tenant contoso: no federated credential")
    assert (
        "Certificates & secrets → Federated credentials → Add credential → scenario "
        f'"Kubernetes accessing Azure resources": Cluster issuer URL {emulator.oidc_issuer()}, '
        "Namespace mail, Service account other (subject system:serviceaccount:mail:other), "
        "Audience api://AzureADTokenExchange"
    ) in token


async def test_check_refuses_a_stale_token_file_before_asking_entra(
    tmp_path: Path, emulator: Emulator
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(emulator.mint_service_account_token(SUBJECT, lifetime=-60))
    result = await check(
        tmp_path, emulator, "--json", client_id="wif-app", federated_token_file=str(token_file)
    )
    assert result.returncode == 1
    [report] = json.loads(result.stdout)["tenants"]
    [credential] = report["checks"]
    assert credential["result"] == "FAILED"
    assert "holds an expired token" in credential["detail"]
    assert "the kubelet renews" in credential["detail"]
    assert emulator.stats.token_requests == 0


async def test_check_for_a_managed_identity_that_sends_as_itself(
    tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_endpoint(emulator, monkeypatch, "app-service")
    result = await check(
        tmp_path, emulator, client_id=None, tenant_id=None, managed_identity="system"
    )
    assert result.returncode == 0, result.stdout
    assert line(result.stdout, "credential") == (
        "credential ok system-assigned managed identity from the App Service endpoint "
        f"{emulator.base_url}/msi/token (IDENTITY_ENDPOINT), sending as itself (no app "
        "registration); nothing to expire, no expiry warning needed"
    )
    assert line(result.stdout, "token") == (
        "token ok from the managed identity endpoint: object (principal) ID "
        f"{SYSTEM.object_id} in tenant {TENANT}"
    )
    assert "Mail.Send (application) granted" in result.stdout
    assert IDENTITY_HEADER not in result.stdout + result.stderr


async def test_check_says_how_to_grant_a_managed_identity_mail_send(
    tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_endpoint(emulator, monkeypatch, "imds")
    result = await check(
        tmp_path,
        emulator,
        client_id=None,
        tenant_id=None,
        managed_identity={"client_id": USER.client_id},
    )
    assert result.returncode == 1
    assert line(result.stdout, "credential").startswith(
        f"credential ok user-assigned (client ID {USER.client_id}) managed identity from the "
        f"Azure VM instance metadata service {emulator.base_url}"
    )
    assert "New-MgServicePrincipalAppRoleAssignment" in line(result.stdout, "permissions")


async def test_check_for_a_managed_identity_as_an_apps_credential_in_another_tenant(
    tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_endpoint(emulator, monkeypatch, "imds")
    result = await check(
        tmp_path,
        emulator,
        client_id="mi-app",
        tenant_id=RESOURCE_TENANT,
        managed_identity={"client_id": USER.client_id},
    )
    assert result.returncode == 0, result.stdout
    assert line(result.stdout, "credential").endswith(
        "as a federated credential of app mi-app; nothing to expire, no expiry warning needed"
    )
    assert line(result.stdout, "token") == (
        f"token ok from {emulator.login_endpoint}/{RESOURCE_TENANT} with the managed identity as a "
        "federated credential"
    )
    assert line(result.stdout, "federated credential") == (
        f"federated credential ok app mi-app trusts issuer {emulator.base_url}/{TENANT}/v2.0, "
        f"subject {USER.object_id}, audience api://AzureADTokenExchange"
    )


async def test_a_gateway_on_a_token_file_reports_failures_and_recovers_when_it_rotates(
    tmp_path: Path, emulator: Emulator, logged: Any
) -> None:
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text(emulator.mint_service_account_token("system:serviceaccount:mail:old"))
    document = tenant_document(
        tmp_path, emulator, client_id="wif-app", federated_token_file=str(token_file)
    )
    document["http"] = HTTP
    config = load_config(write_config(tmp_path, document))
    async with run_gateway(config) as gateway:
        assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE) == {}
        deferred = await gateway.next_event()
        assert (deferred.result, deferred.code) == ("deferred", "AADSTS700213")
        status, body = await get(gateway, "/readyz")
        assert status == 503
        problem = json.loads(body)["problems"]["tenant:contoso"]
        assert "subject system:serviceaccount:mail:old" in problem
        assert "Federated credentials" in problem
        # The log says the same; the suite's guard fails the test if a token is in any line.
        first = logged("deferred")[0]
        assert first["code"] == "AADSTS700213"
        assert "Namespace mail, Service account old" in first["reason"]
        # The service account is fixed and the kubelet writes its next token: no restart.
        token_file.write_text(emulator.mint_service_account_token(SUBJECT))
        await gateway.delivered(1, timeout=30)
        status, body = await get(gateway, "/readyz")
        _, metrics = await get(gateway, "/metrics")
    assert status == 200
    prefix = "smtp_graph_gateway_"
    assert sample(metrics, prefix + "token_requests_total", tenant="contoso", result="failed") == 1
    assert sample(metrics, prefix + "token_requests_total", tenant="contoso", result="ok") == 1
    assert "credential_expiry_timestamp_seconds{" not in metrics  # nothing to expire
    [message] = emulator.delivered()
    assert message.client_id == "wif-app"


async def test_a_gateway_sends_as_its_managed_identity(
    tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_endpoint(emulator, monkeypatch, "app-service")
    document = tenant_document(
        tmp_path, emulator, client_id=None, tenant_id=None, managed_identity="system"
    )
    async with run_gateway(load_config(write_config(tmp_path, document))) as gateway:
        assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE) == {}
        await gateway.delivered(1)
    [message] = emulator.delivered()
    assert (message.client_id, message.tenant_id) == (SYSTEM.client_id, TENANT)
    assert message.mailbox == "scanner@contoso.com"
