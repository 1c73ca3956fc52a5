"""Who is asking: console users signing in with a password, scripts with a bearer token.

Passwords are checked against their scrypt hashes in a thread (scrypt takes tens of
milliseconds on purpose). Failed sign-ins count per client address with the same limiter as
SMTP AUTH (`gateway.smtp.lockout.FailureLimiter`): after `console.lockout.failures` failures
the address is refused for `console.lockout.duration`, right password or not. An unknown user
name costs the same hash as a known one, so the answer's timing does not tell them apart.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.config import ConsoleSettings
from gateway.console.sessions import Session, Sessions
from gateway.passwords import hash_password, verify_password
from gateway.smtp.lockout import FailureLimiter

OPERATOR = "operator"


@dataclass(frozen=True, slots=True)
class Principal:
    """A signed-in user or a token's script, with its role."""

    name: str
    role: str
    session: Session | None = None  # None for a bearer token (no cookie, no CSRF needed)

    @property
    def may_act(self) -> bool:
        """Whether it may change the queue (retry, hold, release, delete, download)."""
        return self.role == OPERATOR

    @property
    def who(self) -> str:
        """How the audit log names it."""
        return self.name if self.session is not None else f"token:{self.name}"


class SignInBackend(Protocol):
    """ "Sign in with Microsoft" as the console needs it (gateway.entra.console_signin; blocking
    calls, made in a thread; a `GatewayError` says why one failed)."""

    def start(self, redirect_uri: str, login_hint: str = "") -> dict[str, Any]: ...

    def finish(self, flow: dict[str, Any], received: dict[str, str]) -> dict[str, Any]: ...


class SignInRefused(Exception):
    """Why a sign-in did not succeed (shown to the user as is)."""


class Authenticator:
    """Checks passwords and tokens; makes sessions."""

    def __init__(self, settings: ConsoleSettings, sessions: Sessions) -> None:
        self._users = {user.username: user for user in settings.users}
        self._tokens = settings.api_tokens
        self.sessions = sessions
        self.limiter = FailureLimiter(
            max_failures=settings.lockout_failures,
            window=settings.lockout_duration,
            lockout=settings.lockout_duration,
        )
        self._decoy = hash_password("the hash an unknown user name is checked against")
        self._once: dict[str, tuple[str, str]] = {}  # one-time sign-in token -> (user, role)

    async def sign_in(self, username: str, password: str, address: str) -> Session:
        """A new session for a right password; `SignInRefused` otherwise (or when locked)."""
        if not self.limiter.begin(address):
            raise SignInRefused("too many failed sign-ins from this address; wait and try again")
        user = self._users.get(username)
        stored = user.password_hash.reveal() if user is not None else self._decoy
        ok = await asyncio.to_thread(verify_password, password, stored)
        if user is None or not ok:
            if self.limiter.locked(address):
                raise SignInRefused(
                    "too many failed sign-ins from this address; wait and try again"
                )
            raise SignInRefused("wrong user name or password")
        self.limiter.succeeded(address)
        return self.sessions.create(user.username, user.role)

    def mint_once(self, username: str, role: str) -> str:
        """A token that signs `username` in once (the demo prints it as a link)."""
        token = secrets.token_urlsafe(32)
        self._once[token] = (username, role)
        return token

    def use_once(self, presented: str) -> Session | None:
        """A new session for a one-time token, which is spent; None for any other string."""
        found = None
        for token in list(self._once):  # every token compared, so timing tells nothing
            if hmac.compare_digest(token.encode(), presented.encode()):
                found = token
        if found is None:
            return None
        username, role = self._once.pop(found)
        return self.sessions.create(username, role)

    def bearer(self, authorization: str) -> Principal | None:
        """The token's principal for an `Authorization: Bearer …` header, else None."""
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return None
        found = None
        for token in self._tokens:  # every token compared, so timing tells nothing
            if hmac.compare_digest(token.token.reveal().encode(), presented.strip().encode()):
                found = token
        return Principal(found.name, found.role) if found is not None else None
