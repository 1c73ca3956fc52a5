"""The machine's Azure managed identity, through msal's `ManagedIdentityClient`.

msal finds the managed identity endpoint from the environment, as the Azure platforms set it:
App Service, Functions and Container Apps (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`), Service
Fabric, Azure Machine Learning (`MSI_ENDPOINT`), an Azure Arc-enabled server (`IDENTITY_ENDPOINT`
+ `IMDS_ENDPOINT`, or the Arc agent installed), and otherwise the Azure VM instance metadata
service at http://169.254.169.254 (`AZURE_POD_IDENTITY_AUTHORITY_HOST` moves it). `endpoint()`
says which one msal will use, for `check` and for error messages.

The endpoint is local to the machine: it is never reached through a proxy. An `https` endpoint
(the emulator) is verified with the tenant's `ca_file`. msal sets no timeout on these requests,
so the session adds one. Errors are explained with what to turn on in the Azure portal. Nothing
here logs, and no token appears in a message.
"""

from __future__ import annotations

import os
from typing import Any

import msal
import requests

from gateway.config import ManagedIdentity, Tenant

_IMDS = "http://169.254.169.254"
_NOT_ASSIGNED = ("identity not found", "unable to load the proper managed identity")


class _TimedSession(requests.Session):
    """A session whose requests time out (msal's managed identity requests set none)."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def request(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self._timeout)
        return super().request(*args, **kwargs)


def identity_session(tenant: Tenant, timeout: float) -> requests.Session:
    """The HTTP session for the managed identity endpoint: no proxy, the tenant's CA."""
    session = _TimedSession(timeout)
    session.trust_env = False  # neither HTTPS_PROXY nor REQUESTS_CA_BUNDLE
    if tenant.ca_file is not None:
        session.verify = str(tenant.ca_file)
    return session


def endpoint() -> str:
    """Where msal will ask for managed identity tokens on this machine, in words."""
    kinds = msal.managed_identity
    detect = getattr(kinds, "get_managed_identity_source", None)  # msal 1.29 and later
    source = detect() if detect is not None else None
    env = os.environ
    named = {
        "SERVICE_FABRIC": f"the Service Fabric endpoint {env.get('IDENTITY_ENDPOINT', '')}",
        "APP_SERVICE": (
            f"the App Service endpoint {env.get('IDENTITY_ENDPOINT', '')} (IDENTITY_ENDPOINT)"
        ),
        "MACHINE_LEARNING": f"the Azure Machine Learning endpoint {env.get('MSI_ENDPOINT', '')}",
        "AZURE_ARC": (
            f"the Azure Arc agent's endpoint "
            f"{env.get('IDENTITY_ENDPOINT') or 'http://localhost:40342'}"
        ),
    }
    for kind, words in named.items():
        if source is not None and source is getattr(kinds, kind, None):
            return words
    host = env.get("AZURE_POD_IDENTITY_AUTHORITY_HOST", _IMDS).rstrip("/")
    return f"the Azure VM instance metadata service {host}"


def _msal_identity(identity: ManagedIdentity) -> Any:
    if identity.system_assigned:
        return msal.SystemAssignedManagedIdentity()
    return msal.UserAssignedManagedIdentity(client_id=identity.client_id)


class IdentityEndpoint:
    """Tokens of one managed identity, for a resource; msal caches them until near expiry."""

    def __init__(self, identity: ManagedIdentity, session: requests.Session) -> None:
        self.identity = identity
        self.session = session
        self._client = msal.ManagedIdentityClient(_msal_identity(identity), http_client=session)

    def __repr__(self) -> str:
        return f"IdentityEndpoint({self.identity.describe()})"

    def acquire(self, resource: str) -> dict[str, Any]:
        """msal's result: `access_token`, or `error` with an explained `error_description`."""
        try:
            result: dict[str, Any] = self._client.acquire_token_for_client(resource=resource)
        except requests.RequestException as error:
            return {
                "error": "managed_identity",
                "error_description": f"cannot reach {endpoint()} ({type(error).__name__}): "
                "the gateway is not on an Azure VM, Azure Arc-enabled server or App Service "
                "with a managed identity, or that endpoint is blocked",
            }
        except ValueError as error:  # msal's ManagedIdentityError, or a reply that is not JSON
            return {
                "error": "managed_identity",
                "error_description": f"{endpoint()} gave no usable answer: {error}",
            }
        if result.get("access_token"):
            return result
        return {
            "error": "managed_identity",
            "error_description": explain_refusal(self.identity, result),
        }

    def close(self) -> None:
        self.session.close()


def explain_refusal(identity: ManagedIdentity, result: dict[str, Any]) -> str:
    """Why the endpoint gave no token, and what to turn on in the Azure portal."""
    said = str(result.get("error_description") or result.get("error") or "no token")
    if any(words in said.lower() for words in _NOT_ASSIGNED):
        where = "Identity"
        what = (
            "System assigned → Status: On"
            if identity.system_assigned
            else f"User assigned → Add, and pick the identity whose client ID is "
            f"{identity.client_id}"
        )
        return (
            f"this machine has no {identity.describe()} managed identity ({endpoint()} said "
            f"{said!r}): in the Azure portal, open the VM, Arc server or App Service → {where} → "
            f"{what}"
        )
    return f"{endpoint()} refused: {said}"
