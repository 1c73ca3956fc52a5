"""Credentials without a secret, as the emulator is configured with them.

`FederatedCredential` is one entry under an app's Certificates & secrets → Federated credentials:
the issuer, subject and audiences a presented token must carry. An issuer may start with
`{emulator}`, which stands for this run's base URL (`https://127.0.0.1:PORT`, unknown until the
listener is bound), so a fixed apps file can trust the emulator's own issuers:
`{emulator}/oidc/NAME` (a test Kubernetes cluster, see oidc.py) or `{emulator}/TENANT/v2.0`
(Entra ID itself: what a managed identity's token carries).

`EmulatorManagedIdentity` is a managed identity assigned to the machine the client runs on; the
managed identity endpoints (managed.py) hand out its tokens. At most one is system-assigned;
user-assigned ones are asked for by client ID (or object ID).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

EMULATOR_BASE = "{emulator}"
TOKEN_EXCHANGE = "api://AzureADTokenExchange"  # noqa: S105 - an audience, not a token
# What a managed identity's token for a federated credential may be asked for, per cloud.
TOKEN_EXCHANGE_AUDIENCES = frozenset(
    {TOKEN_EXCHANGE, "api://AzureADTokenExchangeUSGov", "api://AzureADTokenExchangeChina"}
)


@dataclass(frozen=True)
class FederatedCredential:
    """Trust tokens with this issuer and subject (case-sensitive) and one of these audiences."""

    issuer: str
    subject: str
    audiences: tuple[str, ...] = (TOKEN_EXCHANGE,)
    name: str = ""

    def __post_init__(self) -> None:
        if not self.issuer or not self.subject:
            raise ValueError("a federated credential needs an issuer and a subject")
        if not self.audiences:
            raise ValueError("a federated credential needs at least one audience")

    def issuer_for(self, base_url: str) -> str:
        """The issuer with `{emulator}` replaced by this run's base URL."""
        return self.issuer.replace(EMULATOR_BASE, base_url)


@dataclass(frozen=True)
class EmulatorManagedIdentity:
    """A managed identity the machine has: its tenant, client ID, object (principal) ID."""

    tenant_id: str
    client_id: str
    object_id: str = ""  # default: derived from the client ID
    system_assigned: bool = False
    roles: tuple[str, ...] = ("Mail.Send",)  # app roles granted to its service principal

    def __post_init__(self) -> None:
        if not self.tenant_id or not self.client_id:
            raise ValueError("a managed identity needs a tenant_id and a client_id")
        if not self.object_id:
            derived = str(uuid.uuid5(uuid.NAMESPACE_URL, f"managed-identity:{self.client_id}"))
            object.__setattr__(self, "object_id", derived)

    @property
    def resource_id(self) -> str:
        """The Azure resource ID real tokens carry in `xms_mirid`."""
        if self.system_assigned:
            return (
                "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/emulator"
                "/providers/Microsoft.Compute/virtualMachines/emulator"
            )
        return (
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/emulator"
            f"/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{self.client_id}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "client_id": self.client_id,
            "object_id": self.object_id,
            "system_assigned": self.system_assigned,
            "roles": list(self.roles),
        }


_FEDERATED_KEYS = frozenset({"issuer", "subject", "audiences", "name"})
_IDENTITY_KEYS = frozenset({"tenant_id", "client_id", "object_id", "system_assigned", "roles"})


def federated_from_data(data: Any) -> tuple[FederatedCredential, ...]:
    """An app's `federated_credentials` YAML list."""
    if data is None:
        return ()
    if not isinstance(data, list):
        raise TypeError("federated_credentials: expected a list")
    found = []
    for index, entry in enumerate(data):
        where = f"federated_credentials[{index}]"
        if not isinstance(entry, Mapping):
            raise TypeError(f"{where}: expected a mapping")
        unknown = sorted(set(entry) - _FEDERATED_KEYS)
        if unknown:
            raise ValueError(f"{where}: unknown key(s): {', '.join(unknown)}")
        audiences = entry.get("audiences", [TOKEN_EXCHANGE])
        if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
            raise TypeError(f"{where}: audiences must be a list of strings")
        issuer, subject = entry.get("issuer"), entry.get("subject")
        if not isinstance(issuer, str) or not isinstance(subject, str):
            raise TypeError(f"{where}: issuer and subject are required strings")
        found.append(
            FederatedCredential(issuer, subject, tuple(audiences), str(entry.get("name", "")))
        )
    return tuple(found)


def managed_identities_from_data(data: Any) -> tuple[EmulatorManagedIdentity, ...]:
    """The `managed_identities` YAML list of the file behind `--apps`."""
    if data is None:
        return ()
    if not isinstance(data, list):
        raise TypeError("managed_identities: expected a list")
    found = []
    for index, entry in enumerate(data):
        where = f"managed_identities[{index}]"
        if not isinstance(entry, Mapping):
            raise TypeError(f"{where}: expected a mapping")
        unknown = sorted(set(entry) - _IDENTITY_KEYS)
        if unknown:
            raise ValueError(f"{where}: unknown key(s): {', '.join(unknown)}")
        roles = entry.get("roles", ["Mail.Send"])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise TypeError(f"{where}: roles must be a list of strings")
        system = entry.get("system_assigned", False)
        if not isinstance(system, bool):
            raise TypeError(f"{where}: system_assigned must be true or false")
        try:
            found.append(
                EmulatorManagedIdentity(
                    tenant_id=str(entry.get("tenant_id", "")),
                    client_id=str(entry.get("client_id", "")),
                    object_id=str(entry.get("object_id", "")),
                    system_assigned=system,
                    roles=tuple(roles),
                )
            )
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    return tuple(found)


def check_identities(identities: tuple[EmulatorManagedIdentity, ...]) -> list[str]:
    """Problems with a machine's set of managed identities (for EmulatorSettings)."""
    problems = []
    if sum(identity.system_assigned for identity in identities) > 1:
        problems.append("a machine has at most one system-assigned managed identity")
    ids = [identity.client_id.lower() for identity in identities]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        problems.append(f"managed identities listed twice: {', '.join(duplicates)}")
    return problems
