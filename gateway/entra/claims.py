"""What an access token says about the app's permissions, read from its claims.

An Entra ID access token is a JWT whose claims name the application permissions granted with
admin consent (`roles`) and the delegated ones (`scp`). Reading them tells an administrator
which of two causes an `ErrorAccessDenied` has: the permission is missing (consent), or it is
there and the mailbox lies outside the ApplicationAccessPolicy / RBAC for Applications scope.
The signature is not checked (Entra ID issued the token to us); the token itself is never
logged or shown, only the names of its permissions.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import structlog

from gateway.config import Tenant, Transport

log = structlog.get_logger("gateway.entra")


def token_claims(token: str) -> dict[str, Any] | None:
    """The claims of an access token, read without checking its signature (only to explain
    what it allows); None when it cannot be read, {} when it holds no object."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return None
    return claims if isinstance(claims, dict) else {}


def token_roles(token: str) -> list[str] | None:
    """The permissions an access token carries: its `roles` (application permissions) and the
    names in its `scp` (delegated ones); None when the token cannot be read."""
    claims = token_claims(token)
    if claims is None:
        return None
    roles = claims.get("roles", [])
    found = [str(role) for role in roles] if isinstance(roles, list) else []
    return found + str(claims.get("scp", "")).split()


def required_roles(tenant: Tenant) -> tuple[str, ...]:
    """The permissions a tenant's tokens need for what its configuration asks of it."""
    if tenant.transport is Transport.SMTP_OAUTH:
        return ("SMTP.Send",) if tenant.delegated else ("SMTP.SendAsApp",)
    if tenant.large_messages and not tenant.delegated:
        return ("Mail.Send", "Mail.ReadWrite")
    return ("Mail.Send",)


def missing_roles(tenant: Tenant, token: str) -> list[str]:
    """The required permissions a token lacks ([] when it has them or cannot be read)."""
    roles = token_roles(token)
    if roles is None:
        return []
    return [role for role in required_roles(tenant) if role not in roles]


def warn_missing_roles(tenant: Tenant, token: str) -> None:
    """Log once per token provider (at the first token after start or a changed tenant) when
    the app lacks a permission its configuration needs: mail would wait with ErrorAccessDenied."""
    missing = missing_roles(tenant, token)
    if not missing:
        return
    api = "Office 365 Exchange Online" if tenant.transport is Transport.SMTP_OAUTH else "Graph"
    kind = "delegated" if tenant.delegated else "application"
    log.warning(
        "token_roles_missing",
        tenant=tenant.name,
        missing=missing,
        action=f"add the {api} {kind} permission {' and '.join(missing)} to the app and grant "
        "admin consent; until then its mail is refused with ErrorAccessDenied and waits in the "
        "queue",
    )
