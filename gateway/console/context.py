"""What every console handler needs, in one object: the service, sign-in, cookie settings.

Also the request helpers shared by the pages and the API: who is asking, from where, and the
cookie names (`__Host-` prefixed under TLS, so no other site or path can set them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from gateway.config import ConsoleMicrosoft
from gateway.console.auth import Authenticator, Principal, SignInBackend
from gateway.console.service import ConsoleService
from gateway.console.testmail import TestMail

# On every answer: no framing, nothing from outside, nothing cached, no referrer.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_PRINCIPAL = web.RequestKey("principal", Principal)


@dataclass(frozen=True)
class Context:
    """The console's shared parts."""

    service: ConsoleService
    auth: Authenticator
    tenant_names: Callable[[], list[str]]
    testmail: TestMail
    secure: bool  # served over TLS: cookies are Secure (and __Host- named), HSTS is sent
    microsoft: tuple[ConsoleMicrosoft, SignInBackend] | None = None  # "Sign in with Microsoft"

    @property
    def session_cookie(self) -> str:
        return "__Host-sgg-session" if self.secure else "sgg-session"

    @property
    def signin_cookie(self) -> str:
        return "__Host-sgg-signin" if self.secure else "sgg-signin"

    def set_cookie(self, response: web.StreamResponse, name: str, value: str) -> None:
        """A cookie scripts cannot read and other sites cannot send along."""
        response.set_cookie(
            name, value, path="/", httponly=True, samesite="Strict", secure=self.secure
        )

    def clear_cookie(self, response: web.StreamResponse, name: str) -> None:
        response.del_cookie(name, path="/", secure=self.secure, samesite="Strict", httponly=True)


def principal(request: web.Request) -> Principal:
    """Who is asking (the middleware has made sure someone is)."""
    return request[_PRINCIPAL]


def set_principal(request: web.Request, who: Principal) -> None:
    request[_PRINCIPAL] = who


def client(request: web.Request) -> str:
    """The client's address (a reverse proxy's, behind one)."""
    return request.remote or "unknown"


def local_path(text: str, default: str = "/") -> str:
    """`text` if it is a path on this site (never another host: no open redirect)."""
    if text.startswith("/") and not text.startswith(("//", "/\\")) and "\n" not in text:
        return text
    return default


def see_other(location: str) -> web.Response:
    """A 303 redirect, as a response (aiohttp wants its HTTP exceptions raised, not returned)."""
    return web.Response(status=303, headers={"Location": location})
