"""SASL XOAUTH2 as Exchange Online checks it: the initial response's user and bearer token, and
the principal a token proves (delegated with SMTP.Send for that user, or app-only with
SMTP.SendAsApp for any mailbox)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.emulator.auth import claims_user
from gateway.emulator.state import EmulatorState
from gateway.emulator.tokens import TokenInvalid

EXCHANGE_AUDIENCES = frozenset(
    {
        "https://outlook.office.com",
        "https://outlook.office365.com",
        "00000002-0000-0ff1-ce00-000000000000",
    }
)
SMTP_SEND = "smtp.send"
SEND_AS_APP = "SMTP.SendAsApp"


class SmtpAuthRejected(Exception):
    """Why an XOAUTH2 attempt failed (logged; the client only sees 535 5.7.3)."""


@dataclass(frozen=True)
class SmtpPrincipal:
    """Who AUTH proved: the mailbox (`user=`, lower case) and the token's app and tenant."""

    username: str
    client_id: str
    tenant_id: str
    delegated: bool


def parse_xoauth2(data: bytes) -> tuple[str, str]:
    """(user, bearer token) of a decoded SASL XOAUTH2 initial response."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SmtpAuthRejected("the XOAUTH2 response is not UTF-8") from None
    user = token = ""
    for item in text.split("\x01"):
        if item.startswith("user="):
            user = item.removeprefix("user=").strip()
        elif item.lower().startswith("auth="):
            scheme, _, value = item[5:].partition(" ")
            if scheme.lower() == "bearer":
                token = value.strip()
    if not user or not token:
        raise SmtpAuthRejected("the XOAUTH2 response lacks user= or auth=Bearer")
    return user, token


def verify_xoauth2(state: EmulatorState, username: str, token: str) -> SmtpPrincipal:
    """The principal an XOAUTH2 user/token pair proves, or SmtpAuthRejected saying why not."""
    try:
        claims = state.issuer.verify(token, now=state.clock())
    except TokenInvalid as exc:
        raise SmtpAuthRejected(f"token rejected: {exc.reason}") from None
    audience = str(claims.get("aud") or "").rstrip("/").lower()
    if audience not in EXCHANGE_AUDIENCES:
        raise SmtpAuthRejected(f"the token is for {audience or '(no audience)'}, not Exchange")
    wanted = username.strip().lower()
    scopes = str(claims.get("scp") or "").split()
    delegated = claims.get("idtyp") != "app" and bool(scopes)
    if delegated:
        if SMTP_SEND not in {s.lower() for s in scopes}:
            raise SmtpAuthRejected(f"scp {' '.join(scopes)!r} lacks SMTP.Send")
        signed_in = claims_user(claims)
        if signed_in != wanted:
            raise SmtpAuthRejected(f"the token is {signed_in}'s, not {wanted}'s")
    else:
        roles = claims.get("roles") or []
        if not state.settings.open_mode and SEND_AS_APP not in roles:
            raise SmtpAuthRejected(f"the app's roles {roles} lack {SEND_AS_APP}")
    return SmtpPrincipal(
        username=wanted,
        client_id=str(claims.get("appid") or claims.get("azp") or ""),
        tenant_id=str(claims.get("tid") or ""),
        delegated=delegated,
    )
