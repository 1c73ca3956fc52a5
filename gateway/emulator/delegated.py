"""Delegated sign-in: the device-code and authorization-code (PKCE) flows, and refresh tokens.

    POST /{tenant}/oauth2/v2.0/devicecode   client_id, scope → device_code, user_code,
                                            verification_uri, expires_in, interval, message
    GET  /{tenant}/oauth2/v2.0/authorize    client_id, response_type=code, redirect_uri
                                            (http://localhost[:port][/path] or 127.0.0.1),
                                            scope, state, code_challenge(_method), nonce,
                                            login_hint → 302 redirect_uri?code=…&state=…
    POST /{tenant}/oauth2/v2.0/token        grant_type = urn:ietf:params:oauth:grant-type:
                                            device_code | authorization_code | refresh_token

`tenant` is a tenant id, `organizations`, `consumers` or `common` (signin.py says who may sign
in through which). Public clients (an app without secret or certificate, or `public_client:
true`) send no credential; confidential ones send theirs as for client credentials. The emulator
approves as the user (see signin.py), and the answer is what msal needs for its cache: an access
token whose `aud` is the requested resource (Graph `https://graph.microsoft.com/Mail.Send`, or
Exchange `https://outlook.office.com/SMTP.Send` for SMTP AUTH) with `scp`, `upn`/
`preferred_username`, `oid` and `tid`; an `id_token` (with the request's `nonce`) when `openid`
is asked for; `client_info` when `client_info=1` is posted; a `refresh_token` when
`offline_access` is asked for (and on every refresh). Scopes of one request must name a single
resource (AADSTS28000 otherwise). Errors are Entra's:

    authorization_pending   AADSTS70016  device code not approved yet (keep polling)
    authorization_declined  AADSTS65004  the user declined
    expired_token           AADSTS70020  device code expired
    bad_verification_code   AADSTS70000  unknown device code (or another client's)
    invalid_grant           AADSTS54005  authorization code (or device code) already redeemed
                            AADSTS70008  authorization code expired
                            AADSTS501481 code_verifier does not match code_challenge
                            AADSTS50173  refresh token revoked (a fresh sign-in is needed)
                            AADSTS700082 refresh token expired (inactivity)
                            AADSTS9002313 not a refresh token / code this emulator issued
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping

from aiohttp import web

from gateway.emulator.authorize import (
    authorize_problem,
    entra_time,
    error_page,
    loopback,
    malformed_grant,
    pkce_matches,
    redirect,
    with_state,
)
from gateway.emulator.login import (
    LoginError,
    LoginRoutes,
    TokenRequest,
    app_not_found,
    missing,
    unknown_tenant,
)
from gateway.emulator.scopes import DEVICE_CODE_GRANT, NO_STORE, RESPONSE_MODES, parse_scope
from gateway.emulator.settings import EmulatorApp, EmulatorUser
from gateway.emulator.signin import (
    AUTH_CODE_LIFETIME,
    MULTI_TENANT,
    SignInRefused,
)
from gateway.emulator.state import EmulatorState
from gateway.emulator.user_tokens import client_info, user_tokens


class DelegatedRoutes:
    def __init__(self, state: EmulatorState, login: LoginRoutes) -> None:
        self.state = state
        self.login = login
        login.grants.update(
            {
                DEVICE_CODE_GRANT: self._device_code_grant,
                "authorization_code": self._authorization_code_grant,
                "refresh_token": self._refresh_token_grant,
            }
        )

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_post("/{tenant}/oauth2/v2.0/devicecode", self.devicecode)
        router.add_get("/{tenant}/oauth2/v2.0/authorize", self.authorize)
        router.add_get("/devicelogin", self.devicelogin)

    # -- device code ------------------------------------------------------------------------

    async def devicecode(self, request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        try:
            self._check_tenant(tenant)
            client_id = form.get("client_id")
            if not client_id:
                raise missing("client_id")
            self._sign_in_app(tenant, client_id)
            scope = form.get("scope", "")
            parse_scope(scope)
        except LoginError as exc:
            return self.login.error(exc)
        flow = self.state.signin.new_device_flow(client_id, tenant, scope, now=self.state.clock())
        verification_uri = f"{self.state.external_base(request)}/devicelogin"
        self.state.log.info(
            "emulator.device_code", tenant=tenant, client_id=client_id, user_code=flow.user_code
        )
        return web.json_response(
            {
                "user_code": flow.user_code,
                "device_code": flow.device_code,
                "verification_uri": verification_uri,
                "expires_in": self.state.settings.device_code_lifetime,
                "interval": self.state.settings.device_code_interval,
                "message": (
                    f"To sign in, use a web browser to open the page {verification_uri} and "
                    f"enter the code {flow.user_code} to authenticate."
                ),
            },
            headers=NO_STORE,
        )

    async def devicelogin(self, request: web.Request) -> web.Response:
        settings = self.state.settings
        polls = settings.device_code_pending_polls
        auto = (
            f"Device codes are approved automatically after {polls} poll(s) as the first user "
            "allowed in the tenant."
            if polls is not None
            else "Device codes wait for an explicit approval."
        )
        admin = f"{self.state.external_base(request)}/_emulator/devicecodes"
        return web.Response(
            text=(
                "smtp-graph-gateway emulator: there is no sign-in page to visit.\n"
                f"{auto}\n"
                f"Pending codes: GET {admin}\n"
                f"Approve:  POST {admin}/{{user_code}}/approve  (JSON body "
                '{"username": "…"} optional)\n'
                f"Decline:  POST {admin}/{{user_code}}/decline\n"
            ),
        )

    async def _device_code_grant(self, request: TokenRequest) -> web.Response:
        client_id = request.form.get("client_id")
        if not client_id:
            raise missing("client_id")
        device_code = request.form.get("device_code") or request.form.get("code")
        if not device_code:
            raise missing("device_code")
        flow = self.state.signin.device_flows.get(device_code)
        if (
            flow is None
            or flow.client_id.lower() != client_id.lower()
            or flow.tenant.lower() != request.tenant.lower()
        ):
            raise LoginError(
                400,
                "bad_verification_code",
                70000,
                "Provided grant is invalid or malformed: the device code is unknown, or was "
                "issued to another client or through another tenant.",
            )
        await self._client(request, client_id)
        now = self.state.clock()
        flow.polls += 1
        if flow.status in ("pending", "approved") and now >= flow.expires_at:
            flow.status = "expired"
        pending_polls = self.state.settings.device_code_pending_polls
        if flow.status == "pending" and pending_polls is not None and flow.polls > pending_polls:
            try:
                flow.user = self.state.signin.default_user(flow.tenant)
                flow.status = "approved"
            except SignInRefused as exc:
                self.state.log.warning(
                    "emulator.device_code_unapproved", user_code=flow.user_code, reason=str(exc)
                )
        if flow.status == "pending":
            raise LoginError(
                400,
                "authorization_pending",
                70016,
                "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
            )
        if flow.status == "declined":
            raise LoginError(
                400, "authorization_declined", 65004, "User declined to consent to access the app."
            )
        if flow.status == "expired":
            raise LoginError(
                400,
                "expired_token",
                70020,
                "The provided value for the input parameter 'device_code' is not valid. This "
                "device code has expired.",
            )
        if flow.status == "redeemed" or flow.user is None:
            raise LoginError(
                400,
                "invalid_grant",
                54005,
                "OAuth2 Authorization code was already redeemed, please retry with a new valid "
                "code or use an existing refresh token.",
            )
        response = user_tokens(self.state, request, client_id, flow.user, flow.scope, auth_time=now)
        flow.status = "redeemed"
        return response

    # -- authorization code -----------------------------------------------------------------

    async def authorize(self, request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        query = request.query
        try:
            client_id, redirect_uri = self._authorize_target(tenant, query)
        except LoginError as exc:  # nowhere safe to redirect to: an error page, as Entra
            return error_page(exc)
        response_mode = query.get("response_mode", "query")
        if response_mode not in RESPONSE_MODES:
            response_mode = "query"
            error: LoginError | None = LoginError(
                400,
                "invalid_request",
                900144,
                f"The response_mode '{query.get('response_mode')}' is not supported: use query, "
                "fragment or form_post.",
            )
        else:
            error = authorize_problem(query)
        user: EmulatorUser | None = None
        if error is None:
            try:
                user = self.state.signin.user(query.get("login_hint"), tenant)
            except SignInRefused as exc:
                error = LoginError(400, "access_denied", exc.code, str(exc))
        state = query.get("state")
        if error is not None or user is None:
            assert error is not None
            params = {
                "error": error.error,
                "error_description": f"AADSTS{error.code}: {error.text}",
                "error_uri": f"{self.state.base_url}/error?code={error.code}",
            }
            return redirect(redirect_uri, response_mode, with_state(params, state))
        now = self.state.clock()
        code = self.state.signin.new_code(
            client_id=client_id,
            tenant=tenant,
            redirect_uri=redirect_uri,
            scope=query.get("scope", ""),
            user=user,
            code_challenge=query["code_challenge"],
            code_challenge_method=query.get("code_challenge_method", "plain"),
            nonce=query.get("nonce"),
            issued_at=now,
            expires_at=now + AUTH_CODE_LIFETIME,
        )
        params = {"code": code.code}
        if query.get("client_info") == "1":
            params["client_info"] = client_info(user)
        params["session_state"] = str(uuid.uuid4())
        self.state.log.info(
            "emulator.authorized", tenant=tenant, client_id=client_id, user=user.username
        )
        return redirect(redirect_uri, response_mode, with_state(params, state))

    def _authorize_target(self, tenant: str, query: Mapping[str, str]) -> tuple[str, str]:
        """(client_id, redirect_uri) of an authorization request, or the LoginError to show."""
        self._check_tenant(tenant)
        client_id = query.get("client_id")
        if not client_id:
            raise missing("client_id")
        self._sign_in_app(tenant, client_id)
        redirect_uri = query.get("redirect_uri")
        if not redirect_uri:
            raise missing("redirect_uri")
        if not loopback(redirect_uri):
            raise LoginError(
                400,
                "invalid_request",
                50011,
                f"The redirect URI '{redirect_uri}' specified in the request does not match "
                f"the redirect URIs configured for the application '{client_id}'. The "
                "emulator accepts http://localhost[:port][/path] and http://127.0.0.1[:port]"
                "[/path].",
            )
        return client_id, redirect_uri

    async def _authorization_code_grant(self, request: TokenRequest) -> web.Response:
        form = request.form
        client_id = form.get("client_id")
        if not client_id:
            raise missing("client_id")
        code_text = form.get("code")
        if not code_text:
            raise missing("code")
        await self._client(request, client_id)
        code = self.state.signin.codes.get(code_text)
        if code is None:
            raise malformed_grant()
        if code.redeemed:
            raise LoginError(
                400,
                "invalid_grant",
                54005,
                "OAuth2 Authorization code was already redeemed, please retry with a new valid "
                "code or use an existing refresh token.",
            )
        if code.client_id.lower() != client_id.lower():
            raise LoginError(
                400,
                "invalid_grant",
                70000,
                "Provided grant is invalid or malformed: the authorization code was issued to "
                "another client.",
            )
        now = self.state.clock()
        if now >= code.expires_at:
            raise LoginError(
                400,
                "invalid_grant",
                70008,
                "The provided authorization code or refresh token has expired due to "
                "inactivity. Send a new interactive authorization request for this user and "
                "resource.",
            )
        if form.get("redirect_uri") != code.redirect_uri:
            raise LoginError(
                400,
                "invalid_grant",
                50011,
                f"The redirect URI '{form.get('redirect_uri', '')}' specified in the request "
                "does not match the redirect URI used in the authorization request.",
            )
        verifier = form.get("code_verifier")
        if not verifier:
            raise missing("code_verifier")
        if not pkce_matches(verifier, code.code_challenge, code.code_challenge_method):
            raise LoginError(
                400,
                "invalid_grant",
                501481,
                "The Code_Verifier does not match the code_challenge supplied in the "
                "authorization request.",
            )
        response = user_tokens(
            self.state,
            request,
            client_id,
            code.user,
            form.get("scope") or code.scope,
            nonce=code.nonce,
            auth_time=code.issued_at,
        )
        code.redeemed = True
        return response

    # -- refresh token ----------------------------------------------------------------------

    async def _refresh_token_grant(self, request: TokenRequest) -> web.Response:
        form = request.form
        client_id = form.get("client_id")
        if not client_id:
            raise missing("client_id")
        token = form.get("refresh_token")
        if not token:
            raise missing("refresh_token")
        await self._client(request, client_id)
        grant = self.state.signin.refresh_tokens.get(token)
        if grant is None:
            raise malformed_grant()
        if grant.client_id.lower() != client_id.lower():
            raise LoginError(
                400,
                "invalid_grant",
                70000,
                "Provided grant is invalid or malformed: the refresh token was issued to another "
                "client.",
            )
        now = self.state.clock()
        if grant.revoked_at is not None:
            raise LoginError(
                400,
                "invalid_grant",
                50173,
                "The provided grant has expired due to it being revoked, a fresh auth token is "
                "needed. The user might have changed or reset their password. The grant was "
                f"issued on '{entra_time(grant.issued_at)}' and the TokensValidFrom date "
                "(before which tokens are not valid) for this user is "
                f"'{entra_time(grant.revoked_at)}'.",
            )
        lifetime = self.state.settings.refresh_token_lifetime
        if now >= grant.issued_at + lifetime:
            raise LoginError(
                400,
                "invalid_grant",
                700082,
                "The refresh token has expired due to inactivity. The token was issued on "
                f"{entra_time(grant.issued_at)} and was inactive for "
                f"{dt.timedelta(seconds=lifetime)}.",
            )
        if grant.redeemed and self.state.settings.single_use_refresh_tokens:
            raise LoginError(
                400,
                "invalid_grant",
                70000,
                "Provided grant is invalid or malformed: the refresh token was already redeemed "
                "(this emulator runs with single_use_refresh_tokens).",
            )
        scope = form.get("scope")
        if not scope:
            raise missing("scope")
        response = user_tokens(
            self.state,
            request,
            client_id,
            grant.user,
            scope,
            auth_time=grant.auth_time,
            refresh=True,
        )
        grant.redeemed = True
        return response

    # -- shared -----------------------------------------------------------------------------

    def _check_tenant(self, tenant: str) -> None:
        if tenant.lower() not in MULTI_TENANT and not self.login.tenant_known(tenant):
            raise unknown_tenant(tenant, discovery=False)

    def _sign_in_app(self, tenant: str, client_id: str) -> EmulatorApp | None:
        if self.state.settings.open_mode:
            return None
        app = self.login.find_sign_in_app(tenant, client_id)
        if app is None:
            raise app_not_found(client_id, tenant)
        return app

    async def _client(self, request: TokenRequest, client_id: str) -> EmulatorApp | None:
        """The app redeeming a delegated grant: a public client, or one proving its credential."""
        form = request.form
        has_credential = "client_secret" in form or "client_assertion" in form
        app = self._sign_in_app(request.tenant, client_id)
        if has_credential:
            await self.login.authenticate_client(request, client_id, app=app)
        elif app is not None and not app.is_public_client:
            raise LoginError(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or "
                "'client_secret'.",
            )
        return app
