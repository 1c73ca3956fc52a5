"""Delegated sign-in state: who may sign in where, pending device codes, auth codes, refresh tokens.

The emulator plays the user too: a device code is approved automatically after
`device_code_pending_polls` polls (as the first user allowed in the flow's tenant) or explicitly
(`approve`, with any allowed user), and can be declined or expired on request; an authorization
request is approved at once (as its `login_hint`, or the first allowed user). Which users may
sign in through which authority follows Entra:

    /{tenant id}      users of that tenant
    /organizations    work accounts (any tenant)
    /consumers        personal Microsoft accounts (tenant MSA_TENANT_ID)
    /common           everyone

With no users configured any username signs in: its tenant is the authority's (a fixed id per
domain for /organizations and /common, MSA for /consumers).

Refresh tokens are opaque and remembered here, so they can be revoked: `revoke(user, client)`
stamps every refresh token of that user (and client) as revoked, and redeeming one then fails
with AADSTS50173 while a new sign-in issues new, valid ones.
"""

from __future__ import annotations

import secrets
import string
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.emulator.settings import MSA_TENANT_ID, EmulatorSettings, EmulatorUser

MULTI_TENANT = frozenset({"common", "organizations", "consumers"})
DEFAULT_WORK_USERNAME = "user@contoso.com"
DEFAULT_MSA_USERNAME = "user@outlook.com"
AUTH_CODE_LIFETIME = 600  # seconds; Entra's codes are short-lived (about 10 minutes)
_USER_CODE_ALPHABET = string.ascii_uppercase + string.digits

DeviceStatus = Literal["pending", "approved", "declined", "expired", "redeemed"]


class SignInRefused(Exception):
    """A user cannot sign in here; `code` is Entra's AADSTS number for the reason."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code


@dataclass
class DeviceFlow:
    device_code: str
    user_code: str
    client_id: str
    tenant: str  # the authority's tenant segment, as the client used it
    scope: str
    created_at: float
    expires_at: float
    status: DeviceStatus = "pending"
    polls: int = 0
    user: EmulatorUser | None = None

    def to_json(self, *, now: float) -> dict[str, Any]:
        status = "expired" if self.status == "pending" and now >= self.expires_at else self.status
        return {
            "user_code": self.user_code,
            "client_id": self.client_id,
            "tenant": self.tenant,
            "scope": self.scope,
            "status": status,
            "polls": self.polls,
            "expires_in": max(0, int(self.expires_at - now)),
            "username": self.user.username if self.user else None,
        }


@dataclass
class AuthorizationCode:
    code: str
    client_id: str
    tenant: str
    redirect_uri: str
    scope: str
    user: EmulatorUser
    code_challenge: str
    code_challenge_method: str
    nonce: str | None
    issued_at: float
    expires_at: float
    redeemed: bool = False  # kept after redemption, so a second use is told "already redeemed"


@dataclass
class RefreshGrant:
    """What an opaque refresh token stands for."""

    client_id: str
    user: EmulatorUser
    issued_at: float
    auth_time: float
    revoked_at: float | None = None
    redeemed: bool = False


@dataclass
class SignInStore:
    settings: EmulatorSettings
    device_flows: dict[str, DeviceFlow] = field(default_factory=dict)  # by device_code
    codes: dict[str, AuthorizationCode] = field(default_factory=dict)
    refresh_tokens: dict[str, RefreshGrant] = field(default_factory=dict)

    # -- users ------------------------------------------------------------------------------

    def user(self, username: str | None, tenant: str) -> EmulatorUser:
        """The user signing in through `tenant`'s authority: `username`, or the default one."""
        if username is None or not username.strip():
            return self.default_user(tenant)
        wanted = username.strip().lower()
        if self.settings.open_users:
            return self._open_user(wanted, tenant)
        user = next((u for u in self.settings.users if u.username == wanted), None)
        if user is None:
            raise SignInRefused(
                50034, f"The user account {wanted} does not exist in the emulator's directory."
            )
        if not allowed_in(user, tenant):
            raise SignInRefused(50020, not_in_tenant(user, tenant))
        return user

    def default_user(self, tenant: str) -> EmulatorUser:
        """Who approves when nobody is named: the first configured user allowed in `tenant`."""
        if self.settings.open_users:
            msa = tenant.lower() in ("consumers", MSA_TENANT_ID)
            return self._open_user(DEFAULT_MSA_USERNAME if msa else DEFAULT_WORK_USERNAME, tenant)
        for user in self.settings.users:
            if allowed_in(user, tenant):
                return user
        raise SignInRefused(50058, f"No configured user can sign in through the tenant '{tenant}'.")

    @staticmethod
    def _open_user(username: str, tenant: str) -> EmulatorUser:
        lowered = tenant.lower()
        if lowered in ("consumers", MSA_TENANT_ID):
            tenant_id = MSA_TENANT_ID
        elif lowered in MULTI_TENANT:
            domain = username.partition("@")[2] or "contoso.com"
            tenant_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, domain))
        else:
            tenant_id = tenant
        return EmulatorUser(username=username, tenant_id=tenant_id)

    def tenant_has_users(self, tenant: str) -> bool:
        lowered = tenant.lower()
        return any(u.tenant_id.lower() == lowered for u in self.settings.users)

    # -- device codes -----------------------------------------------------------------------

    def new_device_flow(self, client_id: str, tenant: str, scope: str, *, now: float) -> DeviceFlow:
        self._prune(now)
        flow = DeviceFlow(
            device_code=secrets.token_urlsafe(48),
            user_code=self._new_user_code(),
            client_id=client_id,
            tenant=tenant,
            scope=scope,
            created_at=now,
            expires_at=now + self.settings.device_code_lifetime,
        )
        self.device_flows[flow.device_code] = flow
        return flow

    def _new_user_code(self) -> str:
        taken = {f.user_code for f in self.device_flows.values()}
        while True:
            code = "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(9))
            if code not in taken:
                return code

    def device_flow(self, user_code: str) -> DeviceFlow:
        """The flow with this user code (case-insensitive); KeyError if there is none."""
        wanted = user_code.strip().upper()
        for flow in self.device_flows.values():
            if flow.user_code == wanted:
                return flow
        raise KeyError(user_code)

    def approve(self, user_code: str, username: str | None, *, now: float) -> DeviceFlow:
        """Sign in as `username` (or the default user) on the device code's behalf.

        KeyError: no such code; ValueError: it is no longer pending; SignInRefused: the user may
        not sign in through the flow's tenant.
        """
        flow = self._pending(user_code, now=now)
        flow.user = self.user(username, flow.tenant)
        flow.status = "approved"
        return flow

    def decline(self, user_code: str, *, now: float) -> DeviceFlow:
        flow = self._pending(user_code, now=now)
        flow.status = "declined"
        return flow

    def expire(self, user_code: str) -> DeviceFlow:
        flow = self.device_flow(user_code)
        if flow.status in ("pending", "approved"):
            flow.status = "expired"
        return flow

    def _pending(self, user_code: str, *, now: float) -> DeviceFlow:
        flow = self.device_flow(user_code)
        if flow.status == "pending" and now >= flow.expires_at:
            flow.status = "expired"
        if flow.status != "pending":
            raise ValueError(f"the device code {flow.user_code} is {flow.status}, not pending")
        return flow

    # -- authorization codes ----------------------------------------------------------------

    def new_code(self, **fields: Any) -> AuthorizationCode:
        code = AuthorizationCode(code="1.A" + secrets.token_urlsafe(96), **fields)
        self._prune(code.issued_at)
        self.codes[code.code] = code
        return code

    def _prune(self, now: float) -> None:
        """Forget codes an hour past their expiry (a long emulator run stays small)."""
        horizon = now - 3600
        for key in [k for k, f in self.device_flows.items() if f.expires_at < horizon]:
            del self.device_flows[key]
        for key in [k for k, c in self.codes.items() if c.expires_at < horizon]:
            del self.codes[key]

    # -- refresh tokens ---------------------------------------------------------------------

    def new_refresh_token(
        self, client_id: str, user: EmulatorUser, *, now: float, auth_time: float
    ) -> str:
        token = "1.A" + secrets.token_urlsafe(192)
        self.refresh_tokens[token] = RefreshGrant(client_id, user, now, auth_time)
        return token

    def revoke(self, username: str, client_id: str | None = None, *, now: float) -> int:
        """Revoke the valid refresh tokens of a user (for one client, or all); returns how many."""
        wanted = username.strip().lower()
        count = 0
        for grant in self.refresh_tokens.values():
            if grant.user.username != wanted or grant.revoked_at is not None:
                continue
            if client_id is not None and grant.client_id.lower() != client_id.lower():
                continue
            grant.revoked_at = now
            count += 1
        return count

    def clear_pending(self) -> None:
        """Forget device codes and authorization codes (refresh tokens stay valid, as at Entra)."""
        self.device_flows.clear()
        self.codes.clear()


def allowed_in(user: EmulatorUser, tenant: str) -> bool:
    """Whether `user` may sign in through the authority `/{tenant}`."""
    lowered = tenant.lower()
    if lowered == "common":
        return True
    if lowered == "consumers":
        return user.is_msa
    if lowered == "organizations":
        return not user.is_msa
    return user.tenant_id.lower() == lowered


def not_in_tenant(user: EmulatorUser, tenant: str) -> str:
    lowered = tenant.lower()
    if lowered == "consumers":
        return (
            f"User account '{user.username}' is a work or school account; the 'consumers' "
            "endpoint only signs in personal Microsoft accounts."
        )
    if lowered == "organizations":
        return (
            f"User account '{user.username}' is a personal Microsoft account; the "
            "'organizations' endpoint only signs in work or school accounts."
        )
    return (
        f"User account '{user.username}' from identity provider "
        f"'https://sts.windows.net/{user.tenant_id}/' does not exist in tenant '{tenant}' and "
        "cannot access the application in that tenant."
    )
