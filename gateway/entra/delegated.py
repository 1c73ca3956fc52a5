"""Delegated sign-in: a mailbox user signs in once (`login`), the daemon keeps sending as them.

`login` runs the device-code flow (a code to enter at microsoft.com/devicelogin on any device)
or, where device code is blocked, the authorization-code flow with PKCE on a
`http://localhost` redirect. Either way msal's token cache, holding the refresh token, is
written to the tenant's `token_cache` file: mode 0600, written to a temporary file, fsynced
and renamed, so a crash leaves the old cache or the new one, never half of one.

At run time `DelegatedTokenProvider` gets access tokens from that cache silently (msal
refreshes them with the refresh token and the rotated refresh token is saved back). When the
refresh token is dead — revoked, the password changed, 90 days unused — mail for the tenant is
deferred with one clear reason ("run `smtp-graph-gateway login NAME` again") and no further
requests are made until the cache file changes: a new `login` is picked up without a restart.
Account types follow the tenant's `tenant_id`: one tenant's ID, `organizations`, or
`consumers` (personal Microsoft accounts).
"""

from __future__ import annotations

import contextlib
import http.server
import os
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msal
import requests

from gateway.config import CredentialKind, Tenant
from gateway.entra.managed_tokens import ManagedIdentityTokenProvider
from gateway.entra.tokens import TokenProvider, _http_session, explain_entra_error
from gateway.errors import GatewayError, TokenError

LOGIN_AGAIN = "login_required"
_DEAD_GRANT = {"invalid_grant", "interaction_required"}


def login_hint(tenant: Tenant) -> str:
    return f"run `smtp-graph-gateway login {tenant.name}` again"


# --- the cache file ---------------------------------------------------------------------------


def read_cache(path: Path) -> msal.SerializableTokenCache:
    """msal's cache from `path` (empty when the file does not exist yet)."""
    cache = msal.SerializableTokenCache()
    with contextlib.suppress(FileNotFoundError):
        cache.deserialize(path.read_text(encoding="utf-8"))
    return cache


def write_cache(path: Path, cache: msal.SerializableTokenCache) -> None:
    """Replace the cache file atomically, readable by this user only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(cache.serialize())
            stream.flush()
            os.fsync(stream.fileno())
        temporary.chmod(0o600)
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return status.st_mtime_ns, status.st_size


# --- run time ---------------------------------------------------------------------------------


class DelegatedTokenProvider(TokenProvider):
    """Access tokens for the signed-in account of a delegated tenant, from its token cache."""

    def __init__(self, tenant: Tenant, **kwargs: Any) -> None:
        super().__init__(tenant, **kwargs)
        assert tenant.token_cache is not None  # the loader sets a default
        self._cache_path = tenant.token_cache
        self._cache: msal.SerializableTokenCache | None = None
        self._loaded: tuple[int, int] | None = None
        self._dead: tuple[tuple[int, int] | None, TokenError] | None = None

    def __repr__(self) -> str:
        return f"DelegatedTokenProvider(tenant={self.tenant.name!r})"

    async def get(self) -> str:
        if self._dead is not None:
            stamp, error = self._dead
            if _stamp(self._cache_path) == stamp:
                raise error  # nothing changed since: do not ask Entra ID again
            self._dead = None
            self.invalidate()
        try:
            return await super().get()
        except TokenError as error:
            if error.code == LOGIN_AGAIN:
                self._dead = (_stamp(self._cache_path), error)
            raise

    def _acquire(self) -> dict[str, Any]:
        """Runs in a worker thread: silent acquisition from the cache file."""
        stamp = _stamp(self._cache_path)
        if self._cache is None or stamp != self._loaded:
            self._cache, self._loaded, self._app = read_cache(self._cache_path), stamp, None
        try:
            if self._app is None:
                self._http = _http_session(self.tenant, self._proxy)
                self._app = _public_app(self.tenant, self._cache, self._http, self._timeout)
            accounts = self._app.get_accounts(username=self.tenant.account)
            if not accounts:
                return _login_required(
                    self.tenant,
                    f"{self.tenant.account} has not signed in (no sign-in in {self._cache_path})",
                )
            result = self._app.acquire_token_silent_with_error(
                self.tenant.scopes, account=accounts[0]
            )
        except requests.RequestException as error:
            return {
                "error": "network",
                "error_description": self._unreachable(error),
            }
        except (ValueError, msal.exceptions.MsalServiceError) as error:
            return {"error": "service", "error_description": f"Entra ID error: {error}"}
        if result is None:
            return _login_required(self.tenant, f"the sign-in of {self.tenant.account} expired")
        if result.get("error") in _DEAD_GRANT:
            code, explanation = explain_entra_error(result)
            return _login_required(
                self.tenant,
                f"the sign-in of {self.tenant.account} is no longer valid (revoked, password "
                f"changed or unused for 90 days; {code or result['error']}: {explanation})",
            )
        if self._cache.has_state_changed:
            write_cache(self._cache_path, self._cache)  # the rotated refresh token
            self._cache.has_state_changed = False
            self._loaded = _stamp(self._cache_path)
        return dict(result)

    def _error(self, result: dict[str, Any]) -> TokenError:
        if result.get("error") == LOGIN_AGAIN:
            return TokenError(str(result["error_description"]), code=LOGIN_AGAIN)
        return super()._error(result)


def _login_required(tenant: Tenant, why: str) -> dict[str, Any]:
    return {
        "error": LOGIN_AGAIN,
        "error_description": f"tenant {tenant.name}: {why}; {login_hint(tenant)}",
    }


def _public_app(
    tenant: Tenant, cache: msal.SerializableTokenCache, http: requests.Session, timeout: float
) -> Any:
    return msal.PublicClientApplication(
        tenant.client_id,
        authority=tenant.authority,
        token_cache=cache,
        instance_discovery=False,
        http_client=http,
        timeout=timeout,
    )


# --- login ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignedIn:
    """Who signed in, and where the cache was written."""

    username: str
    cache: Path


class LoginError(GatewayError):
    """The sign-in did not complete; the message says why and what to do."""


def _finish(
    tenant: Tenant, app: Any, cache: msal.SerializableTokenCache, result: dict[str, Any]
) -> SignedIn:
    if "access_token" not in result:
        code, explanation = explain_entra_error(result)
        raise LoginError(f"sign-in failed: {code + ': ' if code else ''}{explanation}")
    claims = result.get("id_token_claims") or {}
    username = str(claims.get("preferred_username") or claims.get("upn") or "")
    if username.lower() != tenant.account.lower():
        raise LoginError(
            f"signed in as {username or 'an unknown account'}, but tenant {tenant.name} sends as "
            f"{tenant.account}: sign in with that account (or change the tenant's account)"
        )
    assert tenant.token_cache is not None
    write_cache(tenant.token_cache, cache)
    return SignedIn(username, tenant.token_cache)


def device_code_login(
    tenant: Tenant, *, show: Callable[[str], None], timeout: float = 30.0, proxy: str = ""
) -> SignedIn:
    """Sign the tenant's account in with the device-code flow (blocking: a CLI command)."""
    cache = read_cache(tenant.token_cache) if tenant.token_cache else msal.SerializableTokenCache()
    with _http_session(tenant, proxy) as session:
        app = _public_app(tenant, cache, session, timeout)
        flow = app.initiate_device_flow(scopes=tenant.scopes)
        if "user_code" not in flow:
            code, explanation = explain_entra_error(flow)
            raise LoginError(
                f"device code sign-in is not available: {code} {explanation}".strip()
                + "; try --browser"
            )
        show(
            str(
                flow.get("message")
                or f"Open {flow['verification_uri']} and enter the code {flow['user_code']}"
            )
        )
        result = app.acquire_token_by_device_flow(flow)
        return _finish(tenant, app, cache, result)


class _Redirect:
    """What the browser brought to the localhost redirect URI."""

    def __init__(self) -> None:
        self.received: dict[str, str] = {}
        self.done = threading.Event()

    def handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        redirect = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = urllib.parse.urlsplit(self.path).query
                redirect.received = dict(urllib.parse.parse_qsl(query))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.end_headers()
                self.wfile.write(b"Signed in. You can close this window.\n")
                redirect.done.set()

            def log_message(self, format: str, *args: Any) -> None:
                return  # the query holds the authorization code: never print it

        return Handler


def browser_login(
    tenant: Tenant,
    *,
    show: Callable[[str], None],
    port: int = 0,
    wait: float = 300.0,
    timeout: float = 30.0,
    proxy: str = "",
) -> SignedIn:
    """Sign the tenant's account in with the authorization-code flow and PKCE: `show` the
    sign-in URL, take the redirect on http://localhost:PORT (blocking: a CLI command)."""
    cache = read_cache(tenant.token_cache) if tenant.token_cache else msal.SerializableTokenCache()
    redirect_target = _Redirect()
    server = http.server.HTTPServer(("127.0.0.1", port), redirect_target.handler())
    with server, _http_session(tenant, proxy) as session:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            app = _public_app(tenant, cache, session, timeout)
            redirect = f"http://localhost:{server.server_address[1]}"
            flow = app.initiate_auth_code_flow(
                scopes=tenant.scopes, redirect_uri=redirect, login_hint=tenant.account
            )
            show(
                f"Open this address in a browser on this machine and sign in as "
                f"{tenant.account}:\n{flow['auth_uri']}"
            )
            if not redirect_target.done.wait(wait):
                raise LoginError(f"no sign-in arrived at {redirect} within {wait:g}s")
            received = redirect_target.received
            if "error" in received:
                code, explanation = explain_entra_error(received)
                raise LoginError(f"sign-in refused: {code + ': ' if code else ''}{explanation}")
            try:
                result = app.acquire_token_by_auth_code_flow(flow, received)
            except ValueError as error:
                raise LoginError(f"the redirect did not match the sign-in: {error}") from None
            return _finish(tenant, app, cache, result)
        finally:
            server.shutdown()
            thread.join(5)


def provider_for(tenant: Tenant, **kwargs: Any) -> TokenProvider:
    """The token provider a tenant needs: its signed-in account's, the managed identity's
    own, or the app's."""
    if tenant.delegated:
        return DelegatedTokenProvider(tenant, **kwargs)
    if tenant.credential_kind is CredentialKind.MANAGED_IDENTITY:
        return ManagedIdentityTokenProvider(tenant, **kwargs)
    return TokenProvider(tenant, **kwargs)
