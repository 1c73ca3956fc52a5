"""A tenant's credential keys: exactly one of a client secret, a certificate, a federated token
file or a managed identity (and none for a delegated tenant, whose user signs in).

`federated_token_file` defaults to `$AZURE_FEDERATED_TOKEN_FILE` (what the AKS workload identity
webhook sets) for an app tenant that names no credential at all. `managed_identity` is `system`
or `{client_id: GUID}`; with the tenant's `client_id` it is the app's credential (its token is
the client assertion), without one the managed identity itself is the sender. Every problem is
reported with its YAML path; a secret is never quoted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config.model import CertificateCredential, ManagedIdentity
from gateway.config.reader import Reader, join
from gateway.config.secrets import Secret

TOKEN_FILE_ENV = "AZURE_FEDERATED_TOKEN_FILE"  # noqa: S105 - a variable name, not a token
_GUID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")
# The credential keys, as an administrator writes them (client_secret_file counts as a secret).
_KINDS = ("client_secret", "certificate", "federated_token_file", "managed_identity")
_ONE_CREDENTIAL = (
    "keep exactly one per tenant; federated_token_file and managed_identity have no secret "
    "that expires"
)


@dataclass(frozen=True)
class Credential:
    """What a tenant's entry names; `usable` is false when a named credential is broken."""

    secret: Secret | None = None
    certificate: CertificateCredential | None = None
    federated_token_file: Path | None = None
    managed_identity: ManagedIdentity | None = None
    usable: bool = True

    def __repr__(self) -> str:
        return f"Credential(usable={self.usable})"


def read_credential(
    reader: Reader, node: Mapping[str, Any], path: str, *, delegated: bool
) -> Credential:
    """The credential keys of one `tenants[]` entry (`path` is its YAML path)."""
    given = [kind for kind in _KINDS if _present(node, kind)]
    if delegated:
        if given:
            reader.issue(
                join(path, "auth"),
                "a delegated tenant signs in a user, not the app: it has no secret, certificate, "
                "federated token file or managed identity",
                "remove the credential (register the app as a public client), or use auth: app",
            )
        return Credential()
    if len(given) > 1:
        reader.issue(
            join(path, given[1]),
            f"more than one credential is set: {', '.join(given)}",
            _ONE_CREDENTIAL,
        )
    if not given:
        return _default(reader, path)
    secret = reader.secret(node, "client_secret", path, required=False, what="client secret")
    certificate = read_certificate(reader, node.get("certificate"), join(path, "certificate"))
    token_file = reader.existing_file(node, "federated_token_file", path)
    identity = _read_managed_identity(
        reader, node.get("managed_identity"), join(path, "managed_identity")
    )
    return Credential(
        secret,
        certificate,
        token_file,
        identity,
        usable=any(value is not None for value in (secret, certificate, token_file, identity)),
    )


def _present(node: Mapping[str, Any], kind: str) -> bool:
    if kind == "client_secret":
        return "client_secret" in node or "client_secret_file" in node
    return kind in node


def _default(reader: Reader, path: str) -> Credential:
    """No credential named: the projected token of $AZURE_FEDERATED_TOKEN_FILE, if set."""
    from_env = reader.env.get(TOKEN_FILE_ENV, "")
    if not from_env:
        reader.issue(
            join(path, "client_secret"),
            "the app needs a credential",
            "set client_secret_file (or client_secret: ${ENV_VAR}), certificate, "
            "federated_token_file or managed_identity",
        )
        return Credential(usable=False)
    token_file = reader.resolve_path(from_env)
    if not token_file.is_file():
        reader.issue(
            join(path, "federated_token_file"),
            f"${TOKEN_FILE_ENV} names {token_file}, which is not a file",
            "mount the projected service-account token there (see "
            "docs/kubernetes-workload-identity.md), or give the tenant a credential",
        )
        return Credential(usable=False)
    return Credential(federated_token_file=token_file)


def _read_managed_identity(reader: Reader, value: object, path: str) -> ManagedIdentity | None:
    """`system`, or `{client_id: GUID}` for a user-assigned identity."""
    if value is None:
        return None
    if isinstance(value, str):
        if value.strip().lower() == "system":
            return ManagedIdentity()
        reader.issue(
            path,
            f"unknown value {value!r}",
            "write `system` for the system-assigned identity, or {client_id: GUID} for a "
            "user-assigned one",
        )
        return None
    node = reader.mapping(value, path, ("client_id",))
    if node is None:
        return None
    client_id = reader.string(node, "client_id", path) or ""
    if not client_id:
        reader.issue(
            join(path, "client_id"),
            "a user-assigned managed identity is named by its client ID",
            "the Client ID on the managed identity's Overview page; or write "
            "managed_identity: system",
        )
        return None
    if not _GUID.match(client_id):
        reader.issue(
            join(path, "client_id"),
            f"not a client ID: {client_id!r}",
            "a GUID, the Client ID on the managed identity's Overview page",
        )
        return None
    return ManagedIdentity(client_id.lower())


def read_certificate(reader: Reader, value: object, path: str) -> CertificateCredential | None:
    """`certificate:` — PEM `cert_file` + `key_file`, or one `pfx_file`, and a key password."""
    if value is None:
        return None
    keys = ("cert_file", "key_file", "pfx_file", "key_password", "key_password_file", "send_x5c")
    node = reader.mapping(value, path, keys)
    if node is None:
        return None
    # Like secrets, relative names are looked up in $CREDENTIALS_DIRECTORY (LoadCredential=).
    files = {
        key: reader.credential_file(node, key, path)
        for key in ("cert_file", "key_file", "pfx_file")
    }
    if "pfx_file" in node and ("cert_file" in node or "key_file" in node):
        reader.issue(path, "give either pfx_file or cert_file + key_file", "not both")
    elif "pfx_file" not in node and not ("cert_file" in node and "key_file" in node):
        reader.issue(
            path,
            "cert_file and key_file (PEM) or pfx_file are required",
            "create a pair with: smtp-graph-gateway cert create",
        )
    password = reader.secret(node, "key_password", path, required=False, what="key or PFX password")
    return CertificateCredential(
        files["cert_file"],
        files["key_file"],
        files["pfx_file"],
        password,
        reader.boolean(node, "send_x5c", path, False),
    )
