"""Managed identity endpoints: where a machine's workload gets its managed identity's tokens.

Two of the protocols msal speaks, on the emulator's HTTPS listener:

- Azure VM IMDS, `GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=R`
  (`client_id=` or `object_id=` for a user-assigned identity), header `Metadata: true`. msal
  asks it at `$AZURE_POD_IDENTITY_AUTHORITY_HOST` (otherwise http://169.254.169.254: point the
  variable here and a test never leaves the machine). Errors: `{"error", "error_description"}`.
- App Service (also Functions, Container Apps, Automation),
  `GET /msi/token?api-version=2019-08-01&resource=R` with the header `X-IDENTITY-HEADER`;
  msal uses it when `IDENTITY_ENDPOINT` (this URL) and `IDENTITY_HEADER`
  (`EmulatorSettings.identity_header`) are set. Errors: `{"statusCode", "message"}`.

`Emulator.managed_identity_environment()` gives the variables for either. A token for
`api://AzureADTokenExchange` (or a national cloud's) is what a federated credential accepts:
issued by the emulator's Entra ID for the identity's tenant (`iss` = `{base}/TENANT/v2.0`,
`sub` = the identity's object ID, `xms_mirid` its resource ID). A token for Graph (or Exchange)
carries the roles granted to the identity, as an app-only token does.
"""

from __future__ import annotations

import hmac
import uuid
from urllib.parse import urlsplit

from aiohttp import web

from gateway.emulator.auth import GRAPH_AUDIENCES
from gateway.emulator.identities import TOKEN_EXCHANGE_AUDIENCES, EmulatorManagedIdentity
from gateway.emulator.state import EmulatorState

IMDS_PATH = "/metadata/identity/oauth2/token"
APP_SERVICE_PATH = "/msi/token"
_EXCHANGE_HOSTS = frozenset({"outlook.office365.com", "outlook.office.com"})


class _Refused(Exception):
    def __init__(self, status: int, error: str, text: str) -> None:
        super().__init__(text)
        self.status, self.error, self.text = status, error, text


class ManagedIdentityRoutes:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get(IMDS_PATH, self.imds)
        router.add_get(APP_SERVICE_PATH, self.app_service)

    async def imds(self, request: web.Request) -> web.Response:
        self.state.stats.managed_identity_requests += 1
        try:
            _require_metadata_header(request)
            identity, resource = self._identity(request), self._resource(request)
        except _Refused as refused:
            self._log(request, refused.status)
            return web.json_response(
                {"error": refused.error, "error_description": refused.text}, status=refused.status
            )
        token, expires_on = self._issue(request, identity, resource)
        lifetime = str(self.state.settings.token_lifetime)
        self._log(request, 200, identity)
        return web.json_response(
            {
                "access_token": token,
                "client_id": identity.client_id,
                "expires_in": lifetime,
                "expires_on": str(expires_on),
                "ext_expires_in": lifetime,
                "not_before": str(int(self.state.clock())),
                "resource": resource,
                "token_type": "Bearer",
            }
        )

    async def app_service(self, request: web.Request) -> web.Response:
        self.state.stats.managed_identity_requests += 1
        try:
            self._require_identity_header(request)
            identity, resource = self._identity(request), self._resource(request)
        except _Refused as refused:
            self._log(request, refused.status)
            return web.json_response(
                {
                    "statusCode": refused.status,
                    "message": refused.text,
                    "correlationId": str(uuid.uuid4()),
                },
                status=refused.status,
            )
        token, expires_on = self._issue(request, identity, resource)
        self._log(request, 200, identity)
        return web.json_response(
            {
                "access_token": token,
                "expires_on": str(expires_on),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": identity.client_id,
            }
        )

    def _require_identity_header(self, request: web.Request) -> None:
        presented = request.headers.get("X-IDENTITY-HEADER", "").encode()
        if not hmac.compare_digest(presented, self.state.settings.identity_header.encode()):
            raise _Refused(
                401, "", "The X-IDENTITY-HEADER is missing or is not this app's IDENTITY_HEADER."
            )

    def _identity(self, request: web.Request) -> EmulatorManagedIdentity:
        """The identity asked for: a user-assigned one by client or object ID, else the
        system-assigned one."""
        client_id = request.query.get("client_id", "").lower()
        object_id = request.query.get("object_id", "").lower()
        identities = self.state.settings.managed_identities
        if client_id or object_id:
            wanted = next(
                (
                    identity
                    for identity in identities
                    if identity.client_id.lower() == client_id
                    or identity.object_id.lower() == object_id
                ),
                None,
            )
        else:
            wanted = next((identity for identity in identities if identity.system_assigned), None)
        if wanted is None:
            imds = request.path == IMDS_PATH
            raise _Refused(
                400,
                "invalid_request",
                "Identity not found" if imds else "Unable to load the proper Managed Identity.",
            )
        return wanted

    def _resource(self, request: web.Request) -> str:
        resource = request.query.get("resource", "").rstrip("/")
        if not resource:
            raise _Refused(400, "invalid_request", "Required query variable 'resource' is missing")
        own = {urlsplit(self.state.base_url).netloc, request.headers.get("Host", "")}
        parts = urlsplit(resource)
        known = (
            resource in TOKEN_EXCHANGE_AUDIENCES
            or resource in GRAPH_AUDIENCES
            or (
                parts.scheme == "https" and (parts.netloc in _EXCHANGE_HOSTS or parts.netloc in own)
            )
        )
        if not known:
            raise _Refused(
                400,
                "invalid_resource",
                f"AADSTS500011: The resource principal named {resource} was not found in the "
                "tenant. This can happen if the application has not been installed by the "
                "administrator of the tenant or consented to by any user in the tenant.",
            )
        return resource

    def _issue(
        self, request: web.Request, identity: EmulatorManagedIdentity, resource: str
    ) -> tuple[str, int]:
        now = int(self.state.clock())
        expires_on = now + self.state.settings.token_lifetime
        claims: dict[str, object] = {
            "aud": resource,
            "iss": f"{self.state.external_base(request)}/{identity.tenant_id}/v2.0",
            "iat": now,
            "nbf": now,
            "exp": expires_on,
            "tid": identity.tenant_id,
            "appid": identity.client_id,
            "azp": identity.client_id,
            "oid": identity.object_id,
            "sub": identity.object_id,
            "idtyp": "app",
            "xms_mirid": identity.resource_id,
            "uti": uuid.uuid4().hex,
            "ver": "2.0",
        }
        if resource not in TOKEN_EXCHANGE_AUDIENCES and identity.roles:
            claims["roles"] = list(identity.roles)
        return self.state.issuer.issue(claims), expires_on

    def _log(
        self, request: web.Request, status: int, identity: EmulatorManagedIdentity | None = None
    ) -> None:
        self.state.log.info(
            "emulator.managed_identity_token",
            endpoint="imds" if request.path == IMDS_PATH else "app_service",
            client_id=identity.client_id if identity else request.query.get("client_id"),
            resource=request.query.get("resource"),
            status=status,
        )


def _require_metadata_header(request: web.Request) -> None:
    if request.headers.get("Metadata", "").lower() != "true":
        raise _Refused(400, "invalid_request", "Required metadata header not specified")
