"""Access tokens of the machine's managed identity itself: a tenant with `managed_identity` and
no app (`client_id`) sends as that identity.

This suits a gateway on an Azure VM, Arc-enabled server or App Service in the same tenant as
the mailboxes: grant the identity's service principal the Graph application permission
`Mail.Send` (with PowerShell or Graph: the portal has no API permissions page for managed
identities) and nothing else is needed — no app registration, no secret. The token is asked for
the tenant's Graph resource (or Exchange's, for `transport: smtp-oauth`) from the managed
identity endpoint through msal, reused until five minutes before it expires like any other.
"""

from __future__ import annotations

from typing import Any

from gateway.config import Tenant
from gateway.entra.managed import IdentityEndpoint, identity_session
from gateway.entra.tokens import TokenProvider
from gateway.errors import TokenError


class ManagedIdentityTokenProvider(TokenProvider):
    """Tokens for a tenant whose sender is the machine's managed identity."""

    def __init__(self, tenant: Tenant, **kwargs: Any) -> None:
        super().__init__(tenant, **kwargs)
        assert tenant.managed_identity is not None  # the loader pairs them
        self._identity = tenant.managed_identity
        self._endpoint: IdentityEndpoint | None = None

    def __repr__(self) -> str:
        return f"ManagedIdentityTokenProvider(tenant={self.tenant.name!r})"

    @property
    def resource(self) -> str:
        """The resource the identity's token is for (its scope without `/.default`)."""
        return self.tenant.scopes[0].removesuffix("/.default")

    def _acquire(self) -> dict[str, Any]:
        """Runs in a worker thread: ask the managed identity endpoint (msal caches)."""
        if self._endpoint is None:
            self._endpoint = IdentityEndpoint(
                self._identity, identity_session(self.tenant, self._timeout)
            )
        return self._endpoint.acquire(self.resource)  # errors come back explained

    def _error(self, result: dict[str, Any]) -> TokenError:
        """The endpoint's refusal, explained by IdentityEndpoint (no AADSTS code here)."""
        return TokenError(
            f"tenant {self.tenant.name}: {result.get('error_description', 'no token')}"
        )

    def close(self) -> None:
        super().close()
        if self._endpoint is not None:
            self._endpoint.close()
            self._endpoint = None
