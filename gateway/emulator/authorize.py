"""The pieces of the authorization-code flow outside the routes: what is wrong with a request,
loopback redirect URIs, PKCE, redirects in each response mode, the error page."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import html
from collections.abc import Mapping
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from gateway.emulator.login import LoginError
from gateway.emulator.scopes import LOOPBACK_HOSTS, NO_STORE, parse_scope
from gateway.emulator.tokens import b64url_encode


def authorize_problem(query: Mapping[str, str]) -> LoginError | None:
    """What is wrong with an authorization request's response type, scope or PKCE, if anything."""
    if query.get("response_type") != "code":
        return LoginError(
            400,
            "unsupported_response_type",
            700054,
            f"response_type '{query.get('response_type', '')}' is not enabled for the "
            "application: the emulator implements response_type=code.",
        )
    try:
        parse_scope(query.get("scope", ""))
    except LoginError as exc:
        return exc
    if not query.get("code_challenge"):
        return LoginError(
            400,
            "invalid_request",
            9002325,
            "Proof Key for Code Exchange is required: the request must contain 'code_challenge'.",
        )
    method = query.get("code_challenge_method", "plain")
    if method not in ("S256", "plain"):
        return LoginError(
            400,
            "invalid_request",
            90023,
            f"Invalid code_challenge_method '{method}': use S256 or plain.",
        )
    return None


def loopback(uri: str) -> bool:
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return False
    return (
        parts.scheme == "http"
        and (parts.hostname or "") in LOOPBACK_HOSTS
        and not parts.fragment
        and not parts.username
        and not parts.password
    )


def pkce_matches(verifier: str, challenge: str, method: str) -> bool:
    if method == "S256":
        expected = b64url_encode(hashlib.sha256(verifier.encode("ascii", "replace")).digest())
    else:
        expected = verifier
    return hmac.compare_digest(expected.encode(), challenge.encode())


def with_state(params: dict[str, str], state: str | None) -> dict[str, str]:
    return {**params, "state": state} if state is not None else params


def redirect(redirect_uri: str, response_mode: str, params: Mapping[str, str]) -> web.Response:
    if response_mode == "form_post":
        fields = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}"/>'
            for k, v in params.items()
        )
        page = (
            '<html><head><title>Working...</title></head><body onload="document.forms[0]'
            f'.submit()"><form method="POST" action="{html.escape(redirect_uri)}">{fields}'
            '<noscript><input type="submit" value="Continue"/></noscript></form></body></html>'
        )
        return web.Response(text=page, content_type="text/html", headers=NO_STORE)
    if response_mode == "fragment":
        location = f"{redirect_uri}#{urlencode(params)}"
    else:
        location = f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{urlencode(params)}"
    return web.Response(status=302, headers={"Location": location, **NO_STORE})


def error_page(exc: LoginError) -> web.Response:
    text = html.escape(f"AADSTS{exc.code}: {exc.text}")
    return web.Response(
        status=exc.status,
        text=f"<html><body><h1>Sign in</h1><p>{exc.error}</p><p>{text}</p></body></html>",
        content_type="text/html",
        headers=NO_STORE,
    )


def malformed_grant() -> LoginError:
    return LoginError(
        400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid."
    )


def entra_time(moment: float) -> str:
    """Entra's timestamp style in error texts: 2024-05-01T10:00:00.0000000Z."""
    return dt.datetime.fromtimestamp(moment, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"
