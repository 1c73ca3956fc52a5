"""App-only access tokens from Entra ID with msal, one provider per tenant (delegated sign-ins:
delegated.py).

msal is synchronous and its constructor does network I/O, so the app is built and called in a
worker thread with a timeout. The token is kept in memory and reused until five minutes before
it expires; one refresh runs at a time per tenant however many deliveries wait for it.

A tenant's `ca_file` must win over `REQUESTS_CA_BUNDLE`/`CURL_CA_BUNDLE` in the environment:
requests lets those override `verify=`, so msal gets its own session with `trust_env=False`
and the environment's proxies copied in explicitly.

The app proves itself with a client secret, a certificate (credentials.py), or a client
assertion it does not sign (federation.py): a federated token file or the machine's managed
identity, passed to msal as a callable so each token request gets a fresh one. Entra's
"no federated credential matches" errors are explained with the token's issuer, subject and
audience. A managed identity that sends as itself: managed_tokens.py.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import msal
import requests

from gateway.config import CredentialKind, Tenant
from gateway.entra.claims import warn_missing_roles
from gateway.entra.credentials import msal_client_credential
from gateway.entra.federation import (
    FEDERATION_CODES,
    Assertion,
    AssertionClaims,
    AssertionUnavailable,
    ManagedIdentityAssertion,
    TokenFileAssertion,
    explain_federation,
)
from gateway.entra.managed import IdentityEndpoint, identity_session
from gateway.errors import ConfigError, TokenError
from gateway.network import unreachable

_REFRESH_MARGIN = 300.0

# Entra error codes an administrator meets when setting up an app, and what to do about them.
ENTRA_HINTS: dict[str, str] = {
    "AADSTS7000215": "the client secret is wrong: paste the secret's Value, not its Secret ID",
    "AADSTS7000222": "the client secret has expired: create a new one under Certificates & secrets",
    "AADSTS700016": "no app with this client_id exists in this tenant: check client_id and "
    "tenant_id, or grant the app admin consent in this tenant",
    "AADSTS90002": "the tenant was not found: check tenant_id (the Directory (tenant) ID)",
    "AADSTS900023": "tenant_id is not a valid tenant ID or domain",
    "AADSTS700027": "the certificate is not registered on the app: upload it under "
    "Certificates & secrets",
    "AADSTS65001": "admin consent is missing: grant admin consent for Mail.Send",
    "AADSTS7000112": "the application is disabled",
}


def explain_entra_error(result: dict[str, Any]) -> tuple[str, str]:
    """(AADSTS code, one-line explanation) for an msal error result. Never includes secrets."""
    description = str(result.get("error_description", ""))
    code = description.split(":", 1)[0].strip() if description.startswith("AADSTS") else ""
    if not code and result.get("error_codes"):
        code = f"AADSTS{result['error_codes'][0]}"
    hint = ENTRA_HINTS.get(code)
    first_line = description.splitlines()[0] if description else str(result.get("error", ""))
    return code, hint or first_line or "Entra ID refused the token request"


def _client_credential(tenant: Tenant) -> str | dict[str, Any]:
    """The secret's value, or the certificate as msal wants it (read from the files now)."""
    if tenant.certificate is not None:
        return msal_client_credential(
            tenant.certificate, where=f"tenants.{tenant.name}.certificate"
        )
    assert tenant.client_secret is not None  # the loader requires a credential
    return tenant.client_secret.reveal()


def _assertion(tenant: Tenant, timeout: float) -> Assertion | None:
    """The client assertion source of a tenant without a secret or certificate."""
    if tenant.credential_kind is CredentialKind.FEDERATED_TOKEN_FILE:
        assert tenant.federated_token_file is not None
        return TokenFileAssertion(tenant.federated_token_file)
    if tenant.credential_kind is CredentialKind.MANAGED_IDENTITY_ASSERTION:
        assert tenant.managed_identity is not None
        identity = IdentityEndpoint(tenant.managed_identity, identity_session(tenant, timeout))
        return ManagedIdentityAssertion(identity, tenant.federation_audience)
    return None


def _http_session(tenant: Tenant, proxy: str = "") -> requests.Session:
    """msal's HTTP session. A configured proxy or ca_file must win over the environment, which
    requests would otherwise let override them (REQUESTS_CA_BUNDLE, HTTPS_PROXY)."""
    session = requests.Session()
    if tenant.ca_file is not None or proxy:
        session.trust_env = False
        if tenant.ca_file is not None:
            session.verify = str(tenant.ca_file)
        session.proxies.update(
            {"http": proxy, "https": proxy} if proxy else urllib.request.getproxies()
        )
    return session


class TokenProvider:
    """Access tokens for one tenant's app registration (client credentials)."""

    def __init__(
        self,
        tenant: Tenant,
        *,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
        on_result: Callable[[str, bool, str], None] | None = None,
        proxy: str = "",
    ) -> None:
        self.tenant = tenant
        self._on_result = on_result
        self._proxy = proxy
        self._timeout = timeout
        self._clock = clock
        self._lock = asyncio.Lock()
        self._app: Any = None
        self._http: requests.Session | None = None
        self._token: str | None = None
        self._expires_at = 0.0
        self._assertion: Assertion | None = None
        self._roles_checked = False  # missing permissions are logged once, at the first token
        self.fetches = 0

    def __repr__(self) -> str:
        return f"TokenProvider(tenant={self.tenant.name!r})"

    async def get(self) -> str:
        """A valid access token; `TokenError` with an explanation if none can be had."""
        if self._token is not None and self._clock() < self._expires_at - _REFRESH_MARGIN:
            return self._token
        async with self._lock:
            if self._token is not None and self._clock() < self._expires_at - _REFRESH_MARGIN:
                return self._token
            try:
                result = await asyncio.wait_for(asyncio.to_thread(self._acquire), self._timeout + 5)
            except TimeoutError:
                reason = f"Entra ID did not answer within {self._timeout:g}s"
                self._report(ok=False, reason=reason)
                raise TokenError(reason) from None
            self.fetches += 1
            token = result.get("access_token")
            if not token:
                error = self._error(result)
                self._report(ok=False, reason=error.reason)
                raise error
            self._report(ok=True)
            self._token = str(token)
            if not self._roles_checked:
                self._roles_checked = True
                warn_missing_roles(self.tenant, self._token)
            self._expires_at = self._clock() + float(result.get("expires_in", 3599))
            return self._token

    @property
    def assertion_claims(self) -> AssertionClaims | None:
        """Issuer, subject, audience and expiry of the last federated assertion sent."""
        return self._assertion.claims if self._assertion is not None else None

    def _error(self, result: dict[str, Any]) -> TokenError:
        """The error to raise for an msal result without a token."""
        code, explanation = explain_entra_error(result)
        if code in FEDERATION_CODES and self._assertion is not None:
            explanation = explain_federation(
                code, self.tenant, self._assertion.claims, self._assertion.source()
            )
        return TokenError(f"tenant {self.tenant.name}: {explanation}", code=code)

    def _report(self, *, ok: bool, reason: str = "") -> None:
        if self._on_result is not None:
            self._on_result(self.tenant.name, ok, reason)

    def invalidate(self) -> None:
        """Forget the token (Graph said 401): the next `get` asks Entra ID again."""
        self._token = None
        self._expires_at = 0.0
        self._app = None
        self.close()

    def close(self) -> None:
        """Close msal's HTTP connections (and the managed identity endpoint's)."""
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._assertion is not None:
            self._assertion.close()

    def _acquire(self) -> dict[str, Any]:
        """Runs in a worker thread: build the msal app if needed and request a token."""
        try:
            if self._app is None:
                self._http = _http_session(self.tenant, self._proxy)
                self._assertion = _assertion(self.tenant, self._timeout)
                credential = (
                    {"client_assertion": self._assertion}
                    if self._assertion is not None
                    else _client_credential(self.tenant)
                )
                self._app = msal.ConfidentialClientApplication(
                    self.tenant.client_id,
                    client_credential=credential,
                    authority=self.tenant.authority,
                    instance_discovery=False,
                    http_client=self._http,
                    timeout=self._timeout,
                )
            result: dict[str, Any] = self._app.acquire_token_for_client(scopes=self.tenant.scopes)
        except ValueError:
            # msal raises ValueError when tenant discovery is refused; its message does not
            # carry Entra's answer, so ask the discovery endpoint once more for the error body.
            self._app = None
            return self._discovery_error()
        except AssertionUnavailable as error:
            return {"error": "assertion", "error_description": error.reason}
        except ConfigError as error:
            return {"error": "certificate", "error_description": str(error.issues[0])}
        except requests.RequestException as error:
            return {"error": "network", "error_description": self._unreachable(error)}
        except msal.exceptions.MsalServiceError as error:
            return {"error": "service", "error_description": f"Entra ID error: {error.error}"}
        return result

    def _unreachable(self, error: requests.RequestException) -> str:
        """`cannot reach login.microsoftonline.com:443: certificate verify failed: … — set
        ca_file …`: the host, the real cause and what to check (never the request body)."""
        proxy = self._proxy or urllib.request.getproxies().get("https", "")
        return unreachable(error, self.tenant.login_endpoint, proxy=proxy)

    def _discovery_error(self) -> dict[str, Any]:
        url = f"{self.tenant.authority}/v2.0/.well-known/openid-configuration"
        fallback = {
            "error": "discovery_failed",
            "error_description": "tenant discovery failed: check tenant_id and login_endpoint",
        }
        if self._http is None:
            return fallback
        try:
            answer = self._http.get(url, timeout=self._timeout)
            body = answer.json()
        except (requests.RequestException, ValueError):
            return fallback
        return body if isinstance(body, dict) and body.get("error") else fallback


Factory = Callable[..., TokenProvider]


class TokenProviders:
    """One provider per tenant name (`factory` picks the kind: app-only or delegated)."""

    def __init__(
        self,
        tenants: tuple[Tenant, ...],
        *,
        timeout: float,
        on_result: Callable[[str, bool, str], None] | None = None,
        proxy: str = "",
        factory: Factory = TokenProvider,
    ) -> None:
        self._timeout = timeout
        self._on_result = on_result
        self._proxy = proxy
        self._factory = factory
        self._providers = {tenant.name: self._new(tenant) for tenant in tenants}

    def _new(self, tenant: Tenant) -> TokenProvider:
        return self._factory(
            tenant, timeout=self._timeout, on_result=self._on_result, proxy=self._proxy
        )

    def for_tenant(self, tenant: Tenant) -> TokenProvider:
        """The provider for `tenant` (created if the tenant is new or changed)."""
        provider = self._providers.get(tenant.name)
        if provider is None or provider.tenant != tenant:
            provider = self._providers[tenant.name] = self._new(tenant)
        return provider

    def close(self) -> None:
        """Close every provider's HTTP connections."""
        for provider in self._providers.values():
            provider.close()
