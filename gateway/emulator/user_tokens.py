"""The token response of a delegated sign-in (device code, authorization code, refresh): the
claims msal and the gateway read, an id token for `openid`, a refresh token for
`offline_access`."""

from __future__ import annotations

import hashlib
import json
import uuid

from aiohttp import web

from gateway.emulator.login import LoginError, TokenRequest
from gateway.emulator.scopes import NO_STORE, parse_scope
from gateway.emulator.settings import EmulatorUser
from gateway.emulator.signin import allowed_in, not_in_tenant
from gateway.emulator.state import EmulatorState
from gateway.emulator.tokens import b64url_encode


def user_tokens(
    state: EmulatorState,
    request: TokenRequest,
    client_id: str,
    user: EmulatorUser,
    scope: str,
    *,
    auth_time: float,
    nonce: str | None = None,
    refresh: bool = False,
) -> web.Response:
    """The token response for a signed-in user: an access token for the requested resource,
    and an id token, client info and a refresh token when asked for."""
    scopes = parse_scope(scope)
    if not allowed_in(user, request.tenant):
        raise LoginError(400, "invalid_grant", 50020, not_in_tenant(user, request.tenant))
    now = int(state.clock())
    lifetime = state.settings.token_lifetime
    issuer = f"{request.base}/{user.tenant_id}/v2.0"
    subject = b64url_encode(hashlib.sha256(f"{user.oid}/{client_id}".encode()).digest())
    claims: dict[str, object] = {
        "aud": scopes.resource,
        "iss": issuer,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "tid": user.tenant_id,
        "appid": client_id,
        "azp": client_id,
        "app_displayname": f"emulated app {client_id}",
        "oid": user.oid,
        "sub": subject,
        "preferred_username": user.username,
        "name": user.name,
        "scp": scopes.scp,
        "idtyp": "user",
        "amr": ["pwd"],
        "uti": uuid.uuid4().hex,
        "ver": "1.0",
    }
    if not user.is_msa:
        claims["upn"] = claims["unique_name"] = user.username
    body: dict[str, object] = {
        "token_type": "Bearer",
        "scope": " ".join(scopes.requested),
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": state.issuer.issue(claims),
    }
    if "openid" in scopes.reserved:
        id_claims: dict[str, object] = {
            "aud": client_id,
            "iss": issuer,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "auth_time": int(auth_time),
            "sub": subject,
            "oid": user.oid,
            "tid": user.tenant_id,
            "preferred_username": user.username,
            "name": user.name,
            "ver": "2.0",
        }
        if nonce is not None:
            id_claims["nonce"] = nonce
        if user.roles:
            id_claims["roles"] = list(user.roles)
        if user.groups:
            id_claims["groups"] = list(user.groups)
        body["id_token"] = state.issuer.issue(id_claims)
    if request.form.get("client_info") == "1":
        body["client_info"] = client_info(user)
    if refresh or "offline_access" in scopes.reserved:
        body["refresh_token"] = state.signin.new_refresh_token(
            client_id, user, now=state.clock(), auth_time=auth_time
        )
    state.log.info(
        "emulator.signed_in",
        user=user.username,
        client_id=client_id,
        audience=scopes.resource,
        scp=scopes.scp,
    )
    return web.json_response(body, headers=NO_STORE)


def client_info(user: EmulatorUser) -> str:
    """What msal turns into the account's home_account_id (`uid.utid`)."""
    data = json.dumps({"uid": user.oid, "utid": user.tenant_id}, separators=(",", ":"))
    return b64url_encode(data.encode())
