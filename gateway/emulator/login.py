"""Entra ID (login) routes: OpenID discovery, signing keys, and the v2.0 token endpoint.

Real msal talks to these: `ConfidentialClientApplication(client_id, client_credential=…,
authority=f"{login_endpoint}/{tenant}", instance_discovery=False, http_client=…)`, and
`PublicClientApplication(client_id, authority=…, instance_discovery=False, …)` for delegated
sign-in. Discovery and token errors carry the HTTP status, OAuth error and AADSTS code Entra
answers with, so the gateway's explanations ("the client secret is wrong", "the app is not in
that tenant") can be tested. A client assertion is a certificate's (its `iss` is the client
id: assertions.py) or a federated one (a Kubernetes or managed identity token: federation.py).
Grants are looked up in `LoginRoutes.grants`: client_credentials is here; the device-code,
authorization-code and refresh-token grants (and the devicecode and authorize endpoints) are in
delegated.py, which adds itself to the table.
"""

from __future__ import annotations

import base64
import hmac
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote_plus

from aiohttp import web

from gateway.emulator.assertions import JWT_BEARER, AssertionRejected, verify_client_assertion
from gateway.emulator.federation import verify_federated_assertion
from gateway.emulator.pki import load_certificates
from gateway.emulator.responses import entra_error
from gateway.emulator.settings import MSA_TENANT_ID, OPEN_MODE_ROLES, EmulatorApp
from gateway.emulator.signin import MULTI_TENANT
from gateway.emulator.state import EmulatorState
from gateway.emulator.stats import FederatedUse
from gateway.emulator.tokens import unverified_claims

_RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})


class LoginError(Exception):
    """An Entra error answer."""

    def __init__(self, status: int, error: str, code: int, text: str) -> None:
        super().__init__(f"AADSTS{code}: {text}")
        self.status, self.error, self.code, self.text = status, error, code, text


@dataclass(frozen=True)
class TokenRequest:
    """A parsed POST to the token endpoint."""

    tenant: str
    form: Mapping[str, str]
    base: str  # the origin the client used
    token_endpoint: str


Grant = Callable[[TokenRequest], Awaitable[web.Response]]


class LoginRoutes:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.grants: dict[str, Grant] = {"client_credentials": self._client_credentials}

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/common/discovery/instance", self.instance_discovery)
        router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", self.openid_configuration)
        router.add_get("/{tenant}/discovery/v2.0/keys", self.keys)
        router.add_post("/{tenant}/oauth2/v2.0/token", self.token)

    # -- discovery -------------------------------------------------------------------------

    async def instance_discovery(self, request: web.Request) -> web.Response:
        base = self.state.external_base(request)
        host = base.removeprefix("https://")
        return web.json_response(
            {
                "tenant_discovery_endpoint": (
                    f"{base}/{{tenant}}/v2.0/.well-known/openid-configuration"
                ),
                "api-version": "1.1",
                "metadata": [
                    {"preferred_network": host, "preferred_cache": host, "aliases": [host]}
                ],
            }
        )

    async def openid_configuration(self, request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        base = self.state.external_base(request)
        if tenant.lower() not in MULTI_TENANT and not self.tenant_known(tenant):
            return self.error(unknown_tenant(tenant, discovery=True))
        issuer_tenant = "{tenantid}" if tenant.lower() in MULTI_TENANT else tenant
        if tenant.lower() == "consumers":
            issuer_tenant = MSA_TENANT_ID
        prefix = f"{base}/{tenant}"
        return web.json_response(
            {
                "issuer": f"{base}/{issuer_tenant}/v2.0",
                "authorization_endpoint": f"{prefix}/oauth2/v2.0/authorize",
                "token_endpoint": f"{prefix}/oauth2/v2.0/token",
                "device_authorization_endpoint": f"{prefix}/oauth2/v2.0/devicecode",
                "end_session_endpoint": f"{prefix}/oauth2/v2.0/logout",
                "jwks_uri": f"{prefix}/discovery/v2.0/keys",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "response_types_supported": ["code", "id_token", "code id_token", "token id_token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["ES256"],
                "cloud_instance_name": base.removeprefix("https://"),
            }
        )

    async def keys(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.issuer.jwks())

    # -- token endpoint --------------------------------------------------------------------

    async def token(self, request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        base = self.state.external_base(request)
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        form.update(_basic_credentials(request, form))
        self.state.stats.count_token_request(form.get("grant_type"))
        token_request = TokenRequest(
            tenant=tenant, form=form, base=base, token_endpoint=f"{base}/{tenant}/oauth2/v2.0/token"
        )
        try:
            multi_tenant = tenant.lower() in MULTI_TENANT
            if not self.tenant_known(tenant) and not multi_tenant:
                raise unknown_tenant(tenant, discovery=False)
            response = await self._grant(form.get("grant_type"))(token_request)
        except LoginError as exc:
            response = self.error(exc)
        self.state.log.info(
            "emulator.token_request",
            tenant=tenant,
            client_id=form.get("client_id"),
            grant_type=form.get("grant_type"),
            status=response.status,
        )
        return response

    def _grant(self, grant_type: str | None) -> Grant:
        if not grant_type:
            raise missing("grant_type")
        grant = self.grants.get(grant_type)
        if grant is None:
            raise LoginError(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant_type}'.",
            )
        return grant

    async def _client_credentials(self, request: TokenRequest) -> web.Response:
        client_id = request.form.get("client_id")
        if not client_id:
            raise missing("client_id")
        if not self.tenant_known(request.tenant):  # /common etc. of a registered directory
            raise unknown_tenant(request.tenant, discovery=False)
        app = await self.authenticate_client(request, client_id)
        resource = _resource_from_scope(request.form.get("scope"))
        tenant_id = request.tenant
        if app is not None:  # the directory's own spelling of its ID
            tenant_id = next(
                (t for t in (app.tenant_id, *app.other_tenants) if t.lower() == tenant_id.lower()),
                app.tenant_id,
            )
        roles = app.roles if app else OPEN_MODE_ROLES
        now = int(self.state.clock())
        lifetime = self.state.settings.token_lifetime
        object_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant_id}/{client_id}"))
        claims: dict[str, object] = {
            "aud": resource,
            "iss": f"{request.base}/{tenant_id}/v2.0",
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "tid": tenant_id,
            "appid": client_id,
            "azp": client_id,
            "app_displayname": f"emulated app {client_id}",
            "oid": object_id,
            "sub": object_id,
            "idtyp": "app",
            "uti": uuid.uuid4().hex,
            "ver": "1.0",
        }
        if roles:  # no roles claim at all is how "admin consent missing" looks
            claims["roles"] = list(roles)
        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": self.state.issuer.issue(claims),
            },
            headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
        )

    async def authenticate_client(
        self, request: TokenRequest, client_id: str, *, app: EmulatorApp | None = None
    ) -> EmulatorApp | None:
        """The registered app proven by the request's credential; None in open mode.

        `app`: the registration to check the credential against (default: the app with this
        client id in the request's tenant).
        """
        form = request.form
        secret = form.get("client_secret")
        assertion = form.get("client_assertion")
        if assertion is not None and form.get("client_assertion_type") != JWT_BEARER:
            raise LoginError(
                400,
                "invalid_request",
                50027,
                "The client_assertion_type must be "
                "'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'.",
            )
        if secret is None and assertion is None:
            raise LoginError(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or "
                "'client_secret'.",
            )
        if self.state.settings.open_mode:
            return None
        app = app or self.find_app(request.tenant, client_id)
        if app is None:
            raise app_not_found(client_id, request.tenant)
        if assertion is not None and _federated(assertion, app.client_id):
            await self._check_federated(app, assertion, request)
        elif assertion is not None:
            self._check_assertion(app, assertion, request)
        else:
            self._check_secret(app, secret or "")
        return app

    def _check_secret(self, app: EmulatorApp, secret: str) -> None:
        registered = app.client_secret
        if registered is None or not hmac.compare_digest(registered.encode(), secret.encode()):
            raise LoginError(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is "
                "the client secret value, not the client secret ID, for a secret added to app "
                f"'{app.client_id}'.",
            )
        if app.secret_expired:
            raise LoginError(
                401,
                "invalid_client",
                7000222,
                f"The provided client secret keys for app '{app.client_id}' are expired. Visit "
                "the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, "
                "or consider using certificate credentials for added security: "
                "https://aka.ms/certCreds.",
            )

    def _check_assertion(self, app: EmulatorApp, assertion: str, request: TokenRequest) -> None:
        certificates = load_certificates(app.certificate_pem) if app.certificate_pem else []
        audiences = {
            request.token_endpoint,
            f"{self.state.base_url}/{request.tenant}/oauth2/v2.0/token",
            f"{request.base}/{app.tenant_id}/oauth2/v2.0/token",
        }
        try:
            verify_client_assertion(
                assertion,
                client_id=app.client_id,
                certificates=certificates,
                audiences=audiences,
                now=self.state.clock(),
            )
        except AssertionRejected as exc:
            raise LoginError(exc.status, exc.error, exc.code, exc.text) from None

    async def _check_federated(
        self, app: EmulatorApp, assertion: str, request: TokenRequest
    ) -> None:
        try:
            claims = await verify_federated_assertion(
                assertion,
                client_id=app.client_id,
                credentials=app.federated_credentials,
                base_urls={request.base, self.state.base_url},
                keys=self.state.issuer_keys,
                now=self.state.clock(),
            )
        except AssertionRejected as exc:
            raise LoginError(exc.status, exc.error, exc.code, exc.text) from None
        self.state.stats.federated_assertions.append(
            FederatedUse(
                app.client_id,
                str(claims.get("iss", "")),
                str(claims.get("sub", "")),
                str(claims.get("jti") or claims.get("uti") or ""),
            )
        )

    def tenant_known(self, tenant: str) -> bool:
        """A tenant an app, a managed identity or a configured user is in (every tenant in
        open mode)."""
        settings = self.state.settings
        if settings.open_mode:
            return True
        lowered = tenant.lower()
        return (
            any(app.serves(tenant) for app in settings.apps)
            or any(mi.tenant_id.lower() == lowered for mi in settings.managed_identities)
            or self.state.signin.tenant_has_users(tenant)
        )

    def find_app(self, tenant: str, client_id: str) -> EmulatorApp | None:
        """The app with this client id that has a service principal in `tenant`."""
        for app in self.state.settings.apps:
            if app.serves(tenant) and app.client_id.lower() == client_id.lower():
                return app
        return None

    def find_sign_in_app(self, tenant: str, client_id: str) -> EmulatorApp | None:
        """The app a user signs in to: the one in `tenant`, else any app with this client id
        (apps are multi-tenant here, and /organizations, /consumers, /common name no tenant)."""
        app = self.find_app(tenant, client_id)
        if app is not None:
            return app
        lowered = client_id.lower()
        return next((a for a in self.state.settings.apps if a.client_id.lower() == lowered), None)

    def error(self, exc: LoginError) -> web.Response:
        return entra_error(exc.status, exc.error, exc.code, exc.text, base_url=self.state.base_url)


def app_not_found(client_id: str, tenant: str) -> LoginError:
    return LoginError(
        400,
        "unauthorized_client",
        700016,
        f"Application with identifier '{client_id}' was not found in the directory "
        f"'{tenant}'. This can happen if the application has not been installed "
        "by the administrator of the tenant or consented to by any user in the tenant. "
        "You may have sent your authentication request to the wrong tenant.",
    )


def unknown_tenant(tenant: str, *, discovery: bool) -> LoginError:
    return LoginError(
        400,
        "invalid_tenant" if discovery else "invalid_request",
        90002,
        f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are "
        "signing into the correct cloud. Check with your subscription administrator, this may "
        "happen if there are no active subscriptions for the tenant.",
    )


def _federated(assertion: str, client_id: str) -> bool:
    """A federated credential's token: issued by someone else than the client itself (a
    certificate assertion has `iss` = `sub` = the client id)."""
    claims = unverified_claims(assertion)
    return claims is not None and claims.get("iss") != client_id


def _basic_credentials(request: web.Request, form: Mapping[str, str]) -> dict[str, str]:
    """client_secret_basic: `Authorization: Basic base64(urlencoded id ":" urlencoded secret)`."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic" or "client_secret" in form:
        return {}
    try:
        client_id, sep, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return {}
    if not sep:
        return {}
    return {"client_id": unquote_plus(client_id), "client_secret": unquote_plus(secret)}


def missing(parameter: str) -> LoginError:
    return LoginError(
        400,
        "invalid_request",
        900144,
        f"The request body must contain the following parameter: '{parameter}'.",
    )


def _resource_from_scope(scope: str | None) -> str:
    """The resource of a client-credentials scope, which must be exactly one `…/.default`."""
    if not scope:
        raise missing("scope")
    requested = [s for s in scope.split() if s.lower() not in _RESERVED_SCOPES]
    if len(requested) != 1 or not requested[0].endswith("/.default"):
        raise LoginError(
            400,
            "invalid_scope",
            1002012,
            f"The provided value for scope {scope} is not valid. Client credential flows must "
            "have a scope value with /.default suffixed to the resource identifier (application "
            "ID URI).",
        )
    return requested[0].removesuffix("/.default").rstrip("/")
