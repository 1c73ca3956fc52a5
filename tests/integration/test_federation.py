"""Credentials with nothing to expire, through real msal against the emulator over HTTPS: a
federated token file (workload identity) and the machine's managed identity, alone or as an
app's federated credential in another tenant; every refusal explained."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config import ManagedIdentity, Tenant
from gateway.emulator import (
    Emulator,
    EmulatorApp,
    EmulatorManagedIdentity,
    EmulatorSettings,
    FederatedCredential,
    running_emulator,
)
from gateway.entra.delegated import provider_for
from gateway.entra.managed_tokens import ManagedIdentityTokenProvider
from gateway.entra.tokens import TokenProvider
from gateway.errors import TokenError

TENANT = "11111111-2222-3333-4444-555555555555"  # where the app and the identities live
RESOURCE_TENANT = "99999999-8888-7777-6666-555555555555"  # where the multitenant app sends
SUBJECT = "system:serviceaccount:mail:smtp-graph-gateway"
IDENTITY_HEADER = "identity-header-not-for-logs"
SYSTEM = EmulatorManagedIdentity(
    TENANT, "5a5a5a5a-0000-1111-2222-333333333333", system_assigned=True
)
USER = EmulatorManagedIdentity(TENANT, "6b6b6b6b-0000-1111-2222-333333333333")
WORKLOAD_APP = EmulatorApp(
    TENANT,
    "wif-app",
    federated_credentials=(FederatedCredential("{emulator}/oidc/k8s", SUBJECT, name="aks"),),
)
MI_APP = EmulatorApp(  # trusts the user-assigned identity; provisioned in a second tenant
    TENANT,
    "mi-app",
    federated_credentials=(FederatedCredential(f"{{emulator}}/{TENANT}/v2.0", USER.object_id),),
    other_tenants=(RESOURCE_TENANT,),
)


@pytest.fixture(autouse=True)
def _system_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    # As on a real machine: requests would let these override the tenant's ca_file.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")


@pytest.fixture
async def emulator(tmp_path: Path) -> AsyncIterator[Emulator]:
    settings = EmulatorSettings(
        state_dir=tmp_path / "emu",
        apps=(WORKLOAD_APP, MI_APP),
        managed_identities=(SYSTEM, USER),
        identity_header=IDENTITY_HEADER,
        token_lifetime=300,  # under the five-minute margin: every get() asks again
    )
    async with running_emulator(settings) as running:
        yield running


@pytest.fixture
def app_service(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine is an App Service whose managed identity endpoint is the emulator's."""
    for name, value in emulator.managed_identity_environment("app-service").items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def azure_vm(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine is an Azure VM whose instance metadata service is the emulator."""
    for name, value in emulator.managed_identity_environment("imds").items():
        monkeypatch.setenv(name, value)


def tenant(emulator: Emulator, **fields: Any) -> Tenant:
    values: dict[str, Any] = {
        "name": "contoso",
        "tenant_id": TENANT,
        "client_id": "wif-app",
        "client_secret": None,
        "domains": ("contoso.com",),
        "login_endpoint": emulator.login_endpoint,
        "graph_endpoint": emulator.graph_endpoint,
        "ca_file": emulator.ca_file,
    }
    values.update(fields)
    return Tenant(**values)


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    result: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=="))
    return result


async def refused(provider: TokenProvider) -> TokenError:
    with pytest.raises(TokenError) as caught:
        await provider.get()
    provider.close()
    return caught.value


async def test_a_token_file_that_rotates_is_read_for_each_token_request(
    emulator: Emulator, tmp_path: Path
) -> None:
    token_file = tmp_path / "azure-identity-token"
    first = emulator.mint_service_account_token(SUBJECT)
    token_file.write_text(first)
    provider = TokenProvider(tenant(emulator, federated_token_file=token_file), timeout=10)
    one = await provider.get()
    second = emulator.mint_service_account_token(SUBJECT)  # the kubelet renews the file
    token_file.write_text(second + "\n")
    two = await provider.get()
    provider.close()
    assert one != two and claims_of(two)["appid"] == "wif-app"
    used = [use.jti for use in emulator.stats.federated_assertions]
    assert used == [claims_of(first)["jti"], claims_of(second)["jti"]]
    assert provider.assertion_claims is not None
    assert provider.assertion_claims.subject == SUBJECT


@pytest.mark.parametrize(
    ("mint", "code", "words"),
    [
        (
            {"subject": "system:serviceaccount:mail:other"},
            "AADSTS700213",
            [
                "has the subject system:serviceaccount:mail:other",
                "Certificates & secrets → Federated credentials",
                '"Kubernetes accessing Azure resources"',
                "Namespace mail, Service account other",
                "Audience api://AzureADTokenExchange",
            ],
        ),
        (
            {"subject": SUBJECT, "issuer": "other-cluster"},
            "AADSTS700211",
            ["trusts the issuer https://127.0.0.1:", "/oidc/other-cluster", "trailing slash"],
        ),
        (
            {"subject": SUBJECT, "audience": "api://wrong"},
            "AADSTS700212",
            ["for the audience api://wrong", "serviceAccountToken.audience"],
        ),
    ],
)
async def test_each_mismatch_names_what_to_enter_on_the_app(
    emulator: Emulator, tmp_path: Path, mint: dict[str, str], code: str, words: list[str]
) -> None:
    token_file = tmp_path / "token"
    assertion = emulator.mint_service_account_token(**mint)
    token_file.write_text(assertion)
    error = await refused(
        TokenProvider(tenant(emulator, federated_token_file=token_file), timeout=10)
    )
    assert error.code == code
    for word in words:
        assert word in error.reason
    assert "app wif-app" in error.reason
    assert assertion not in error.reason and assertion.split(".")[2] not in error.reason
    assert error.credentials  # deferred, never bounced


async def test_a_stale_token_file_is_explained(emulator: Emulator, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(emulator.mint_service_account_token(SUBJECT, lifetime=-3600))
    provider = TokenProvider(tenant(emulator, federated_token_file=token_file), timeout=10)
    error = await refused(provider)
    assert error.code == "AADSTS700024"
    assert f"the token from the federated token file {token_file} is not valid now" in (
        error.reason
    )
    assert "renewed by the kubelet" in error.reason


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "does not exist: is the projected service-account token volume mounted?"),
        ("", "is empty"),
        ("hunter2-secret", "does not hold a JWT"),
    ],
)
async def test_a_token_file_without_a_token_is_explained(
    emulator: Emulator, tmp_path: Path, content: str | None, words: str
) -> None:
    token_file = tmp_path / "token"
    if content is not None:
        token_file.write_text(content)
    error = await refused(
        TokenProvider(tenant(emulator, federated_token_file=token_file), timeout=10)
    )
    assert f"the federated token file {token_file} {words}" in error.reason
    assert "hunter2-secret" not in error.reason
    assert emulator.stats.token_requests == 0  # nothing to send


async def test_the_system_assigned_identity_sends_as_itself(
    emulator: Emulator, app_service: None
) -> None:
    mine = tenant(emulator, tenant_id="", client_id="", managed_identity=ManagedIdentity())
    provider = provider_for(mine, timeout=10)
    assert isinstance(provider, ManagedIdentityTokenProvider)
    claims = claims_of(await provider.get())
    provider.close()
    assert claims["appid"] == SYSTEM.client_id and claims["roles"] == ["Mail.Send"]
    assert claims["aud"] == emulator.base_url  # the tenant's Graph endpoint is the resource
    assert emulator.stats.managed_identity_requests == 1
    assert emulator.stats.token_requests == 0  # no app, no Entra token endpoint


async def test_a_user_assigned_identity_on_a_vm(emulator: Emulator, azure_vm: None) -> None:
    mine = tenant(
        emulator, tenant_id="", client_id="", managed_identity=ManagedIdentity(USER.client_id)
    )
    provider = provider_for(mine, timeout=10)
    claims = claims_of(await provider.get())
    provider.close()
    assert claims["appid"] == USER.client_id and claims["oid"] == USER.object_id
    assert emulator.stats.managed_identity_requests == 1


async def test_an_identity_the_machine_lacks_is_explained(
    emulator: Emulator, azure_vm: None
) -> None:
    stranger = "0f0f0f0f-0000-0000-0000-000000000000"
    mine = tenant(emulator, tenant_id="", client_id="", managed_identity=ManagedIdentity(stranger))
    error = await refused(provider_for(mine, timeout=10))
    assert f"this machine has no user-assigned (client ID {stranger}) managed identity" in (
        error.reason
    )
    assert "Azure VM instance metadata service https://127.0.0.1:" in error.reason
    assert (
        f"Identity → User assigned → Add, and pick the identity whose client ID is {stranger}"
        in (error.reason)
    )


async def test_no_managed_identity_endpoint_is_explained(emulator: Emulator) -> None:
    # The suite points the VM protocol at a closed port: like a machine outside Azure.
    mine = tenant(emulator, tenant_id="", client_id="", managed_identity=ManagedIdentity())
    error = await refused(provider_for(mine, timeout=5))
    assert "cannot reach the Azure VM instance metadata service http://127.0.0.1:9" in error.reason
    assert "not on an Azure VM, Azure Arc-enabled server or App Service" in error.reason


async def test_a_managed_identity_is_an_apps_credential_in_another_tenant(
    emulator: Emulator, azure_vm: None
) -> None:
    app = tenant(
        emulator,
        tenant_id=RESOURCE_TENANT,
        client_id="mi-app",
        managed_identity=ManagedIdentity(USER.client_id),
    )
    provider = provider_for(app, timeout=10)
    claims = claims_of(await provider.get())
    provider.close()
    assert (claims["tid"], claims["appid"]) == (RESOURCE_TENANT, "mi-app")
    [use] = emulator.stats.federated_assertions
    assert (use.issuer, use.subject) == (f"{emulator.base_url}/{TENANT}/v2.0", USER.object_id)


async def test_an_identity_the_app_does_not_trust_is_explained(
    emulator: Emulator, app_service: None
) -> None:
    app = tenant(emulator, client_id="mi-app", managed_identity=ManagedIdentity())
    error = await refused(provider_for(app, timeout=10))
    assert error.code == "AADSTS700213"
    assert f"has the subject {SYSTEM.object_id}" in error.reason
    assert 'scenario "Managed identity"' in error.reason
    assert f"object (principal) ID is {SYSTEM.object_id}" in error.reason
