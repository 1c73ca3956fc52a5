""" "Sign in with Microsoft" for the operator console: the authorization-code flow with PKCE,
through the app registration of a configured tenant (its client secret or certificate).

msal makes the flow (state, nonce, PKCE verifier) and checks the answer against it; the
console keeps the flow between the two requests and maps the ID token's `roles` (app roles)
and `groups` (group object IDs) to its own roles. Blocking (msal): call it in a thread.
"""

from __future__ import annotations

import warnings
from typing import Any

import msal
import requests

from gateway.config import Tenant
from gateway.entra.tokens import _client_credential, _http_session, explain_entra_error
from gateway.errors import ConfigError, GatewayError


class ConsoleSignInError(GatewayError):
    """The Microsoft sign-in did not complete; the message says why (shown to the user)."""


class ConsoleSignIn:
    """The console's sign-in through one tenant's app registration."""

    def __init__(self, tenant: Tenant, *, proxy: str = "", timeout: float = 30.0) -> None:
        self.tenant = tenant
        self._proxy = proxy
        self._timeout = timeout
        self._http: requests.Session | None = None
        self._app: Any = None

    def _client(self) -> Any:
        if self._app is None:
            self._http = _http_session(self.tenant, self._proxy)
            try:
                credential = _client_credential(self.tenant)
            except ConfigError as error:
                raise ConsoleSignInError(str(error.issues[0])) from None
            self._app = msal.ConfidentialClientApplication(
                self.tenant.client_id,
                client_credential=credential,
                authority=self.tenant.authority,
                instance_discovery=False,
                http_client=self._http,
                timeout=self._timeout,
            )
        return self._app

    def start(self, redirect_uri: str, login_hint: str = "") -> dict[str, Any]:
        """A new flow: its `auth_uri` is where the browser goes to sign in."""
        try:
            with warnings.catch_warnings():
                # msal recommends response_mode=form_post. The console takes the code in the
                # query instead: a cross-site POST would not bring the SameSite cookie that
                # ties the flow to the browser that started it (login CSRF), and a code in
                # the URL is of no use without the app's secret and the PKCE verifier (pages
                # send no Referer either).
                warnings.filterwarnings("ignore", "response_mode='form_post'", UserWarning)
                flow: dict[str, Any] = self._client().initiate_auth_code_flow(
                    scopes=[],
                    redirect_uri=redirect_uri,
                    login_hint=login_hint or None,
                    response_mode="query",
                )
        except (ValueError, requests.RequestException) as error:
            self._app = None
            raise ConsoleSignInError(
                f"cannot reach Entra ID for tenant {self.tenant.name}: {type(error).__name__}"
            ) from None
        return flow

    def finish(self, flow: dict[str, Any], received: dict[str, str]) -> dict[str, Any]:
        """The signed-in user's ID token claims, from the redirect's parameters."""
        if "error" in received:
            code, explanation = explain_entra_error(dict(received))
            raise ConsoleSignInError(f"sign-in refused: {code + ': ' if code else ''}{explanation}")
        try:
            result = self._client().acquire_token_by_auth_code_flow(flow, received)
        except ValueError as error:  # state mismatch, a replayed or foreign redirect
            raise ConsoleSignInError(f"the answer does not match this sign-in: {error}") from None
        except requests.RequestException as error:
            raise ConsoleSignInError(
                f"cannot reach Entra ID for tenant {self.tenant.name}: {type(error).__name__}"
            ) from None
        if "error" in result:
            code, explanation = explain_entra_error(result)
            raise ConsoleSignInError(f"sign-in refused: {code + ': ' if code else ''}{explanation}")
        claims = result.get("id_token_claims")
        if not isinstance(claims, dict):
            raise ConsoleSignInError("Entra ID returned no ID token (is openid allowed?)")
        return claims

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        self._app = None
