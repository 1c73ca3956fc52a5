""" "Sign in with Microsoft" for the console: the routes around the authorization-code flow.

`/signin/microsoft` starts a flow (the identity backend makes its state, nonce and PKCE
verifier; the flow is kept here, under a random ID in a short-lived cookie) and sends the
browser to Entra ID; `/signin/microsoft/callback` finishes it, maps the ID token's app roles
and group IDs to `operator` or `viewer` (`console.microsoft.operators` / `viewers`; anyone
else is refused), and makes a session like a password sign-in.

The flow cookie is `SameSite=Lax`: the callback is a navigation from Entra ID's site, which a
`Strict` cookie would not come along with. For the same reason the callback answers with a
page that moves on to the console by itself: the session cookie (`Strict`) is sent from then on.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import structlog
from aiohttp import web

from gateway.config import ConsoleMicrosoft
from gateway.console import pages
from gateway.console.auth import OPERATOR, SignInBackend
from gateway.console.context import Context, client, local_path
from gateway.console.layout import esc, frame
from gateway.errors import GatewayError

log = structlog.get_logger("gateway.console")
_FLOW_LIFETIME = 600.0
_MAX_FLOWS = 1000


def role_for(claims: dict[str, Any], settings: ConsoleMicrosoft) -> str | None:
    """`operator`, `viewer` or None from an ID token's `roles` and `groups` claims."""
    held = {str(item) for key in ("roles", "groups") for item in claims.get(key) or []}
    if held & set(settings.operators):
        return OPERATOR
    if held & set(settings.viewers):
        return "viewer"
    return None


class MicrosoftSignIn:
    """The two routes, and the flows under way."""

    def __init__(
        self, context: Context, settings: ConsoleMicrosoft, backend: SignInBackend
    ) -> None:
        self._context = context
        self._settings = settings
        self._backend = backend
        self._flows: dict[str, tuple[float, dict[str, Any], str]] = {}

    @property
    def cookie(self) -> str:
        return "__Host-sgg-microsoft" if self._context.secure else "sgg-microsoft"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/signin/microsoft", self.begin),
            web.get("/signin/microsoft/callback", self.callback),
        ]

    def _redirect_uri(self, request: web.Request) -> str:
        if self._settings.redirect_uri:
            return self._settings.redirect_uri
        return str(request.url.origin()) + "/signin/microsoft/callback"

    def _refused(self, text: str, status: int = 401) -> web.Response:
        body = pages.problem(text) + '<p><a href="/signin">Sign in again</a></p>'
        page = frame("Sign-in refused", body, error=text)
        return web.Response(text=page, status=status, content_type="text/html", charset="utf-8")

    async def begin(self, request: web.Request) -> web.StreamResponse:
        now = time.monotonic()
        self._flows = {k: v for k, v in self._flows.items() if now - v[0] < _FLOW_LIFETIME}
        if len(self._flows) >= _MAX_FLOWS:
            return self._refused("too many sign-ins under way; try again in a few minutes", 503)
        hint = request.query.get("login_hint", "")[:200]
        try:
            flow = await asyncio.to_thread(self._backend.start, self._redirect_uri(request), hint)
        except GatewayError as error:
            log.warning(
                "console_signin_failed", via="microsoft", client=client(request), reason=str(error)
            )
            return self._refused(str(error), 502)
        key = secrets.token_urlsafe(32)
        self._flows[key] = (now, flow, local_path(request.query.get("next", "/")))
        response = web.Response(status=303, headers={"Location": str(flow["auth_uri"])})
        response.set_cookie(
            self.cookie,
            key,
            path="/",
            httponly=True,
            samesite="Lax",
            secure=self._context.secure,
            max_age=int(_FLOW_LIFETIME),
        )
        return response

    async def callback(self, request: web.Request) -> web.StreamResponse:
        key = request.cookies.get(self.cookie, "")
        found = self._flows.pop(key, None) if key else None
        address = client(request)
        if found is None or time.monotonic() - found[0] >= _FLOW_LIFETIME:
            log.warning(
                "console_signin_failed",
                via="microsoft",
                client=address,
                reason="no sign-in under way in this browser (or it expired)",
            )
            return self._refused("this sign-in expired or was not started here; start again")
        _started, flow, next_path = found
        try:
            claims = await asyncio.to_thread(self._backend.finish, flow, dict(request.query))
        except GatewayError as error:
            log.warning("console_signin_failed", via="microsoft", client=address, reason=str(error))
            return self._refused(str(error))
        username = str(claims.get("preferred_username") or claims.get("oid") or "")
        role = role_for(claims, self._settings)
        if role is None or not username:
            log.warning(
                "console_signin_failed",
                via="microsoft",
                user=username,
                client=address,
                reason="no console role (app role or group) for this account",
            )
            return self._refused(
                f"{username or 'this account'} has no console role: assign it an app role "
                "or a group listed in console.microsoft.operators or viewers",
                403,
            )
        self._context.auth.sessions.end(request.cookies.get(self._context.session_cookie))
        session = self._context.auth.sessions.create(username, role)
        log.info("console_signin", user=username, role=role, via="microsoft", client=address)
        # A page that moves on by itself: the navigation to the console then starts here, so
        # the Strict session cookie goes along (it would not on a redirect from Entra ID's site).
        body = f'<p><a href="{esc(next_path)}" id="continue">Continue</a></p>'
        page = frame(
            "Signed in",
            body,
            notice=f"Signed in as {username} ({role})",
            refresh=1,
            refresh_to=next_path,
        )
        response = web.Response(text=page, content_type="text/html", charset="utf-8")
        self._context.set_cookie(response, self._context.session_cookie, session.id)
        response.del_cookie(self.cookie, path="/")
        return response
