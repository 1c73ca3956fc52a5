"""Who is calling Graph: bearer-token validation and permission checks for the mail routes.

A request needs a token this emulator issued, unexpired, for Graph: `aud` is one of Graph's
resource identifiers (any national cloud's, or the Graph app id) or the emulator's own origin,
which is what a client derives when it builds the scope from a configured Graph endpoint.
Failures answer as Graph does: 401 `InvalidAuthenticationToken`, or 403 `ErrorAccessDenied`
"Access is denied. Check credentials and try again." when the token lacks the permission (an
app-only token carries application permissions in `roles`, a delegated one in `scp`). A
delegated token acts for its user only: `/me` is that user's mailbox, and `/users/{id}` must
name the same user (UPN or object id), else 403 `ErrorAccessDenied` (the emulator has no
shared-mailbox grants).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from gateway.emulator.state import EmulatorState
from gateway.emulator.tokens import (
    REASON_EXPIRED,
    REASON_MALFORMED,
    REASON_NOT_YET_VALID,
    TokenInvalid,
    unverified_claims,
)

GRAPH_AUDIENCES = frozenset(
    {
        "https://graph.microsoft.com",
        "https://canary.graph.microsoft.com",
        "https://graph.microsoft.us",
        "https://dod-graph.microsoft.us",
        "https://microsoftgraph.chinacloudapi.cn",
        "00000003-0000-0000-c000-000000000000",
    }
)
ACCESS_DENIED = "Access is denied. Check credentials and try again."

_MESSAGES = {
    REASON_MALFORMED: "CompactToken parsing failed with error code: 80049217",
    REASON_EXPIRED: "Lifetime validation failed, the token is expired.",
    REASON_NOT_YET_VALID: "Lifetime validation failed, the token is not yet valid.",
}


class AuthFailure(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Caller:
    tenant_id: str
    client_id: str
    roles: frozenset[str]
    scopes: frozenset[str]
    user: str | None  # the signed-in user's UPN for delegated tokens
    is_app: bool
    object_id: str = ""  # `oid`: the user's (delegated) or service principal's (app-only)

    def allows(self, permission: str) -> bool:
        granted = self.roles if self.is_app else self.scopes
        return permission in granted


def authenticate(state: EmulatorState, request: web.Request) -> Caller:
    """The caller proven by the request's bearer token, or AuthFailure (401)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if not header or scheme.lower() != "bearer" or not token:
        raise AuthFailure(401, "InvalidAuthenticationToken", "Access token is empty.")
    try:
        claims = state.issuer.verify(token, now=state.clock())
    except TokenInvalid as exc:
        message = _MESSAGES.get(exc.reason, "Access token validation failure. Invalid signature.")
        raise AuthFailure(401, "InvalidAuthenticationToken", message) from None
    if not _audience_ok(claims.get("aud"), state, request):
        raise AuthFailure(
            401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience."
        )
    return _caller(claims)


def require(caller: Caller, permission: str) -> None:
    if not caller.allows(permission):
        raise AuthFailure(403, "ErrorAccessDenied", ACCESS_DENIED)


def token_user(request: web.Request) -> str | None:
    """The user a delegated bearer token names, without verifying it (for bookkeeping)."""
    _, _, token = request.headers.get("Authorization", "").partition(" ")
    claims = unverified_claims(token.strip())
    return claims_user(claims) if claims else None


def _caller(claims: Mapping[str, Any]) -> Caller:
    roles = claims.get("roles") or []
    scopes = str(claims.get("scp") or "").split()
    is_app = claims.get("idtyp") == "app" or not scopes
    return Caller(
        tenant_id=str(claims.get("tid") or ""),
        client_id=str(claims.get("appid") or claims.get("azp") or ""),
        roles=frozenset(r for r in roles if isinstance(r, str)),
        scopes=frozenset(scopes),
        user=None if is_app else claims_user(claims),
        is_app=is_app,
        object_id=str(claims.get("oid") or ""),
    )


def claims_user(claims: Mapping[str, Any]) -> str | None:
    """The (lower-cased) user a delegated token names: `upn`, else `preferred_username`."""
    for key in ("upn", "preferred_username", "unique_name"):
        value = claims.get(key)
        if isinstance(value, str) and value:
            return value.lower()
    return None


def _audience_ok(audience: Any, state: EmulatorState, request: web.Request) -> bool:
    if not isinstance(audience, str):
        return False
    audience = audience.rstrip("/")
    if audience in GRAPH_AUDIENCES:
        return True
    own = {urlsplit(state.base_url).netloc, request.headers.get("Host", "")}
    parts = urlsplit(audience)
    return parts.scheme == "https" and parts.netloc in own
