"""The console's HTTP server: an aiohttp application on its own address (`console.listen`),
optionally over TLS, on the gateway's event loop.

One middleware guards everything: who is asking (a session cookie, or a bearer token for
the API), CSRF on every request that changes something, and the security headers (no
framing, no outside resources, nothing cached). Only the sign-in page and the stylesheet are
served to someone not signed in; a page sends them to sign in, the API answers 401.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, MutableMapping

import structlog
from aiohttp import web

from gateway.console.api import Api, problem
from gateway.console.auth import Principal
from gateway.console.context import (
    SECURITY_HEADERS,
    Context,
    client,
    see_other,
    set_principal,
)
from gateway.console.handlers import Pages, signin_redirect
from gateway.console.microsoft import MicrosoftSignIn
from gateway.errors import ConfigError
from gateway.network import bind_issue

log = structlog.get_logger("gateway.console")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_PUBLIC = {
    ("GET", "/signin"),
    ("POST", "/signin"),
    ("GET", "/console.css"),
    ("GET", "/signin/once"),
    ("GET", "/signin/microsoft"),
    ("GET", "/signin/microsoft/callback"),
}
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class ConsoleServer:
    """The operator console on one address."""

    def __init__(
        self, host: str, port: int, context: Context, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._host = host
        self._port = port
        self._context = context
        self._ssl = ssl_context
        self._runner: web.AppRunner | None = None
        self.port = port

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=1024**2)
        app.add_routes(Pages(self._context).routes())
        app.add_routes(Api(self._context).routes())
        if self._context.microsoft is not None:
            settings, backend = self._context.microsoft
            app.add_routes(MicrosoftSignIn(self._context, settings, backend).routes())
        return app

    async def start(self) -> None:
        """Bind and serve; `ConfigError` naming `console.listen` when the address is taken."""
        self._runner = web.AppRunner(self.application(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, ssl_context=self._ssl)
        try:
            await site.start()
        except OSError as error:
            await self._runner.cleanup()
            self._runner = None
            raise ConfigError(
                [bind_issue(error, "console.listen", self._host, self._port)]
            ) from None
        addresses = self._runner.addresses
        if addresses:
            self.port = int(addresses[0][1])
        scheme = "https" if self._ssl else "http"
        log.info("console_started", url=f"{scheme}://{_url_host(self._host)}:{self.port}/")

    def one_time_link(self, username: str, role: str) -> str:
        """A URL that signs `username` in once, as `role` (for the demo to print)."""
        token = self._context.auth.mint_once(username, role)
        scheme = "https" if self._ssl else "http"
        return f"{scheme}://{_url_host(self._host)}:{self.port}/signin/once?token={token}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await self._checked(request, handler)
        except web.HTTPException as answer:  # aiohttp's own 404 and 405
            self._protect(answer.headers)
            raise
        if not response.prepared:  # a download sent its headers already (the same ones)
            self._protect(response.headers)
        return response

    def _protect(self, headers: MutableMapping[str, str]) -> None:
        headers.update(SECURITY_HEADERS)
        if self._context.secure:
            headers["Strict-Transport-Security"] = "max-age=31536000"

    async def _checked(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if (request.method, request.path) in _PUBLIC:
            return await handler(request)
        api = request.path.startswith("/api/")
        who = self._who(request, api=api)
        if who is None:
            if api:
                response = problem("sign in first (a session, or Authorization: Bearer)", 401)
                response.headers["WWW-Authenticate"] = 'Bearer realm="smtp-graph-gateway"'
                return response
            if request.method in _SAFE_METHODS:
                return signin_redirect(request.path_qs)
            return see_other("/signin")
        if request.method not in _SAFE_METHODS and who.session is not None:
            if api:
                presented = request.headers.get("X-CSRF-Token")
            else:
                presented = str((await request.post()).get("csrf", "")) or None
            if not who.session.csrf_ok(presented):
                log.warning(
                    "console_csrf_refused",
                    user=who.who,
                    path=request.path,
                    client=client(request),
                )
                text = "the form's security token is missing or stale; reload the page"
                if api:
                    return problem(text + " (send X-CSRF-Token from /api/v1/whoami)", 403)
                return web.Response(text=text, status=403)
        set_principal(request, who)
        return await handler(request)

    def _who(self, request: web.Request, *, api: bool) -> Principal | None:
        auth = self._context.auth
        header = request.headers.get("Authorization", "")
        if api and header:
            address = client(request)
            if not auth.limiter.begin(address):
                return None
            found = auth.bearer(header)
            if found is not None:
                auth.limiter.succeeded(address)
            else:
                log.warning("console_token_refused", client=address)
            return found
        # A page reloading itself (`?auto=1`) does not count as activity for the idle timeout.
        session = auth.sessions.get(
            request.cookies.get(self._context.session_cookie),
            touch=request.query.get("auto") != "1",
        )
        if session is None:
            return None
        return Principal(session.username, session.role, session)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
