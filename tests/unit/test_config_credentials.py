"""Credentials with nothing to expire in the config: exactly one credential per app tenant, a
federated token file (also from $AZURE_FEDERATED_TOKEN_FILE) or a managed identity, every
mistake reported at once with its YAML path."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import CredentialKind, ManagedIdentity, Tenant, parse_config
from gateway.errors import ConfigError

MI_CLIENT_ID = "7d8e9f00-1111-2222-3333-444455556666"


def document(tenant: str) -> str:
    return f"""
smtp:
  listeners: [{{name: lan, port: 2525}}]
tenants:
  - name: contoso
    domains: [contoso.com]
{tenant}
spool: {{directory: spool}}
"""


APP = """    tenant_id: 11111111-1111-1111-1111-111111111111
    client_id: 22222222-2222-2222-2222-222222222222
"""


def tenant_of(text: str, tmp_path: Path, env: dict[str, str] | None = None) -> Tenant:
    return parse_config(document(text), base_dir=tmp_path, env=env or {}).tenants[0]


def errors_of(text: str, tmp_path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(document(text), base_dir=tmp_path, env=env or {})
    return [str(issue) for issue in caught.value.issues]


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "azure-identity-token"
    path.write_text("not read at load time\n")
    return path


def test_federated_token_file_is_the_credential(tmp_path: Path, token_file: Path) -> None:
    tenant = tenant_of(APP + "    federated_token_file: azure-identity-token\n", tmp_path)
    assert tenant.credential_kind is CredentialKind.FEDERATED_TOKEN_FILE
    assert tenant.federated_token_file == token_file  # relative to the config file
    assert tenant.client_secret is None
    assert tenant.federation_audience == "api://AzureADTokenExchange"


def test_the_workload_identity_webhook_variable_is_the_default(
    tmp_path: Path, token_file: Path
) -> None:
    env = {"AZURE_FEDERATED_TOKEN_FILE": str(token_file)}
    tenant = tenant_of(APP, tmp_path, env)
    assert tenant.credential_kind is CredentialKind.FEDERATED_TOKEN_FILE
    assert tenant.federated_token_file == token_file
    # A tenant that names its own credential keeps it.
    with_secret = tenant_of(APP + "    client_secret: s3cr3t-value\n", tmp_path, env)
    assert with_secret.credential_kind is CredentialKind.CLIENT_SECRET
    assert with_secret.federated_token_file is None


def test_a_default_token_file_that_is_not_there_is_reported(tmp_path: Path) -> None:
    env = {"AZURE_FEDERATED_TOKEN_FILE": str(tmp_path / "nowhere")}
    [error] = errors_of(APP, tmp_path, env)
    assert error.startswith(
        f"tenants[0].federated_token_file: $AZURE_FEDERATED_TOKEN_FILE names {tmp_path}/nowhere"
    )


def test_an_app_without_any_credential_is_told_its_choices(tmp_path: Path) -> None:
    [error] = errors_of(APP, tmp_path)
    assert error == (
        "tenants[0].client_secret: the app needs a credential — set client_secret_file (or "
        "client_secret: ${ENV_VAR}), certificate, federated_token_file or managed_identity"
    )


def test_managed_identity_alone_sends_as_itself(tmp_path: Path) -> None:
    tenant = tenant_of("    managed_identity: system\n", tmp_path)
    assert tenant.credential_kind is CredentialKind.MANAGED_IDENTITY
    assert tenant.managed_identity == ManagedIdentity()
    assert tenant.client_id == "" and tenant.tenant_id == ""
    user = tenant_of(f"    managed_identity: {{client_id: {MI_CLIENT_ID.upper()}}}\n", tmp_path)
    assert user.managed_identity == ManagedIdentity(MI_CLIENT_ID)
    assert user.managed_identity.describe() == f"user-assigned (client ID {MI_CLIENT_ID})"


def test_managed_identity_with_an_app_is_the_apps_credential(tmp_path: Path) -> None:
    tenant = tenant_of(APP + "    managed_identity: System\n    cloud: usgov\n", tmp_path)
    assert tenant.credential_kind is CredentialKind.MANAGED_IDENTITY_ASSERTION
    assert tenant.client_id == "22222222-2222-2222-2222-222222222222"
    assert tenant.federation_audience == "api://AzureADTokenExchangeUSGov"


def test_exactly_one_credential_per_app_tenant(tmp_path: Path, token_file: Path) -> None:
    [error] = errors_of(
        APP + "    client_secret: s3cr3t-value\n    managed_identity: system\n", tmp_path
    )
    assert error.startswith(
        "tenants[0].managed_identity: more than one credential is set: client_secret, "
        "managed_identity — keep exactly one per tenant"
    )
    assert "s3cr3t-value" not in error
    [error] = errors_of(
        APP + "    federated_token_file: azure-identity-token\n    managed_identity: system\n",
        tmp_path,
    )
    assert "federated_token_file, managed_identity" in error


def test_every_credential_mistake_is_reported_at_once(tmp_path: Path) -> None:
    text = f"""
smtp:
  listeners: [{{name: lan, port: 2525}}]
tenants:
  - name: a
    domains: [a.com]
    managed_identity: user
  - name: b
    domains: [b.com]
    managed_identity: {{client_id: my-identity}}
  - name: c
    domains: [c.com]
    managed_identity: {{}}
  - name: d
    domains: [d.com]
    managed_identity: {{client_id: {MI_CLIENT_ID}, resource_id: x}}
  - name: e
    domains: [e.com]
    managed_identity: system
    client_secret_expires: 2030-01-01
  - name: f
    domains: [f.com]
    auth: delegated
    client_id: 33333333-3333-3333-3333-333333333333
    account: scanner@f.com
    managed_identity: system
  - name: g
    domains: [g.com]
    tenant_id: t
    client_id: c
    federated_token_file: /nonexistent/token
spool: {{directory: spool}}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, base_dir=tmp_path, env={})
    errors = [str(issue) for issue in caught.value.issues]
    assert errors == [
        "tenants[0].managed_identity: unknown value 'user' — write `system` for the "
        "system-assigned identity, or {client_id: GUID} for a user-assigned one",
        "tenants[1].managed_identity.client_id: not a client ID: 'my-identity' — a GUID, the "
        "Client ID on the managed identity's Overview page",
        "tenants[2].managed_identity.client_id: a user-assigned managed identity is named by "
        "its client ID — the Client ID on the managed identity's Overview page; or write "
        "managed_identity: system",
        "tenants[3].managed_identity.resource_id: unknown key — allowed: client_id",
        "tenants[4].client_secret_expires: only a client secret has an expiry date to watch — "
        "a federated token file or a managed identity has nothing to expire: remove it",
        "tenants[5].auth: a delegated tenant signs in a user, not the app: it has no secret, "
        "certificate, federated token file or managed identity — remove the credential "
        "(register the app as a public client), or use auth: app",
        "tenants[6].federated_token_file: file not found: /nonexistent/token — create it or "
        "fix the path",
    ]
