"""Client assertions the gateway does not sign (workload identity federation), and Entra's
"no federated credential matches" errors explained.

Two sources give the app's `client_assertion`, both handed to msal as a callable so that every
token request gets a fresh one:

- `TokenFileAssertion`: a token file another system keeps fresh — in Kubernetes the projected
  service-account token (`$AZURE_FEDERATED_TOKEN_FILE`), which the kubelet rewrites well
  before it expires. The file is read again for every token request.
- `ManagedIdentityAssertion`: the machine's managed identity's token for
  `api://AzureADTokenExchange` (msal's `ManagedIdentityClient` caches it until near expiry).

Entra compares the token's `iss`, `sub` and `aud` with the app's federated credentials; when
none matches, the explanation names the values to enter under App registrations → the app →
Certificates & secrets → Federated credentials, read from the token's claims (claims are not
secret; the token itself never appears in a message or a log line).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from dataclasses import dataclass
from pathlib import Path

from gateway.config import CredentialKind, Tenant
from gateway.entra.managed import IdentityEndpoint, endpoint
from gateway.errors import TokenError

MAX_TOKEN_FILE = 64 * 1024  # a service-account token is about 1 KiB
_SERVICE_ACCOUNT = re.compile(r"^system:serviceaccount:([^:]+):([^:]+)$")
# AADSTS codes that mean "the federated credential and the token do not match" (and kin).
FEDERATION_CODES = frozenset(
    {
        "AADSTS70021",
        "AADSTS700211",
        "AADSTS700212",
        "AADSTS700213",
        "AADSTS7002138",
        "AADSTS700222",
        "AADSTS700024",
        "AADSTS700027",
        "AADSTS50166",
        "AADSTS501661",
        "AADSTS90061",
    }
)


class AssertionUnavailable(TokenError):
    """No assertion to send: the token file or the managed identity failed (raised inside
    msal's call to the assertion callable, caught by the token provider)."""


@dataclass(frozen=True)
class AssertionClaims:
    """What Entra compares with an app's federated credentials."""

    issuer: str
    subject: str
    audiences: tuple[str, ...]
    expires: dt.datetime | None

    @property
    def audience(self) -> str:
        return ", ".join(self.audiences) or "(none)"

    def describe(self, now: dt.datetime | None = None) -> str:
        """`issuer …, subject …, audience …, expires … (in N min)`."""
        text = f"issuer {self.issuer}, subject {self.subject}, audience {self.audience}"
        if self.expires is None:
            return text + ", no expiry"
        now = now or dt.datetime.now(dt.UTC)
        minutes = int((self.expires - now).total_seconds() // 60)
        when = f"in {minutes} min" if minutes >= 0 else f"{-minutes} min ago"
        return f"{text}, expires {self.expires:%Y-%m-%d %H:%M:%S} UTC ({when})"


def read_claims(token: str) -> AssertionClaims | None:
    """The claims of a JWT, unverified (they only explain); None if it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (ValueError, binascii.Error):
        return None
    if not isinstance(claims, dict):
        return None
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience
    expiry = claims.get("exp")
    return AssertionClaims(
        issuer=str(claims.get("iss", "")),
        subject=str(claims.get("sub", "")),
        audiences=tuple(str(a) for a in audiences) if isinstance(audiences, list) else (),
        expires=(
            dt.datetime.fromtimestamp(expiry, dt.UTC)
            if isinstance(expiry, int | float) and not isinstance(expiry, bool)
            else None
        ),
    )


def read_token_file(path: Path) -> str:
    """The token in `path`; AssertionUnavailable (with what to fix) if there is none."""
    where = f"the federated token file {path}"
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_TOKEN_FILE + 1)
    except FileNotFoundError:
        raise AssertionUnavailable(
            f"{where} does not exist: is the projected service-account token volume mounted?"
        ) from None
    except OSError as error:
        raise AssertionUnavailable(f"{where} cannot be read: {error.strerror}") from None
    if len(data) > MAX_TOKEN_FILE:
        raise AssertionUnavailable(f"{where} is larger than 64 KiB: it holds no token")
    token = data.decode("ascii", errors="replace").strip()
    if not token:
        raise AssertionUnavailable(f"{where} is empty")
    if read_claims(token) is None:
        raise AssertionUnavailable(
            f"{where} does not hold a JWT (a Kubernetes service-account token is one)"
        )
    return token


class TokenFileAssertion:
    """msal's `client_assertion` callable: the token file, read again at every call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.claims: AssertionClaims | None = None  # of the last token read

    def __repr__(self) -> str:
        return f"TokenFileAssertion({str(self.path)!r})"

    def __call__(self) -> str:
        token = read_token_file(self.path)
        self.claims = read_claims(token)
        return token

    def source(self) -> str:
        return f"the federated token file {self.path}"

    def close(self) -> None:
        """Nothing to close (the file is opened and closed at each read)."""


class ManagedIdentityAssertion:
    """msal's `client_assertion` callable: the managed identity's token for the federation
    audience (`api://AzureADTokenExchange` in the global cloud)."""

    def __init__(self, identity_endpoint: IdentityEndpoint, audience: str) -> None:
        self._endpoint = identity_endpoint
        self._audience = audience
        self.claims: AssertionClaims | None = None

    def __repr__(self) -> str:
        return f"ManagedIdentityAssertion({self._endpoint.identity.describe()})"

    def __call__(self) -> str:
        result = self._endpoint.acquire(self._audience)
        token = result.get("access_token")
        if not token:
            raise AssertionUnavailable(str(result.get("error_description")))
        self.claims = read_claims(str(token))
        return str(token)

    def source(self) -> str:
        return f"the {self._endpoint.identity.describe()} managed identity from {endpoint()}"

    def close(self) -> None:
        self._endpoint.close()


Assertion = TokenFileAssertion | ManagedIdentityAssertion


def portal_steps(tenant: Tenant, claims: AssertionClaims | None) -> str:
    """Where to add the federated credential this token needs, and with which values."""
    where = (
        f"App registrations → the app {tenant.client_id} → Certificates & secrets → Federated "
        "credentials → Add credential"
    )
    audience = tenant.federation_audience
    if claims is None:
        return f"{where}, with the issuer and subject of the token and the audience {audience}"
    if tenant.credential_kind is CredentialKind.MANAGED_IDENTITY_ASSERTION:
        return (
            f'{where} → scenario "Managed identity", and select the managed identity whose '
            f"object (principal) ID is {claims.subject} (issuer {claims.issuer}, audience "
            f"{audience})"
        )
    account = _SERVICE_ACCOUNT.match(claims.subject)
    if account:
        return (
            f'{where} → scenario "Kubernetes accessing Azure resources": Cluster issuer URL '
            f"{claims.issuer}, Namespace {account.group(1)}, Service account "
            f"{account.group(2)} (subject {claims.subject}), Audience {audience}"
        )
    return (
        f'{where} → scenario "Other issuer": Issuer {claims.issuer}, Subject identifier '
        f"{claims.subject}, Audience {audience}"
    )


def explain_federation(
    code: str, tenant: Tenant, claims: AssertionClaims | None, source: str
) -> str:
    """What an administrator does about a federated-credential error from Entra ID."""
    app = f"app {tenant.client_id}"
    steps = portal_steps(tenant, claims)
    if claims is None:
        return f"no federated credential on {app} accepts the token from {source}: {steps}"
    audience = tenant.federation_audience
    if code == "AADSTS700211":
        return (
            f"no federated credential on {app} trusts the issuer {claims.issuer} (the issuer "
            f"must match exactly, trailing slash included): {steps}"
        )
    if code == "AADSTS700213":
        return (
            f"no federated credential on {app} for the issuer {claims.issuer} has the subject "
            f"{claims.subject}: {steps}"
        )
    if code == "AADSTS7002138":
        return (
            f"the federated credential on {app} names the subject {claims.subject} in other "
            f"upper/lower case; subjects are compared case-sensitively: {steps}"
        )
    if code == "AADSTS700212":
        return (
            f"the token from {source} is for the audience {claims.audience}, which the "
            f"federated credential on {app} for subject {claims.subject} does not list: request "
            f"the token for {audience} (the projected volume's serviceAccountToken.audience) "
            f"and keep {audience} as the credential's Audience"
        )
    if code == "AADSTS700024" and tenant.credential_kind is not CredentialKind.FEDERATED_TOKEN_FILE:
        return (
            f"the token from {source} is not valid now ({claims.describe()}): check this "
            "machine's clock"
        )
    if code == "AADSTS700024":
        return (
            f"the token from {source} is not valid now ({claims.describe()}): a projected "
            "service-account token is renewed by the kubelet long before it expires, so the "
            "file is stale or this machine's clock is wrong"
        )
    if code == "AADSTS700027":
        return (
            f"Entra ID cannot verify the signature of the token from {source} with the keys "
            f"{claims.issuer} publishes: after the service-account signing key changed, "
            "publish the new key set (JWKS) at the issuer URL"
        )
    if code in ("AADSTS50166", "AADSTS501661", "AADSTS90061"):
        return (
            f"Entra ID cannot fetch {claims.issuer}/.well-known/openid-configuration or the "
            "keys it names: the issuer must be reachable from the internet over HTTPS (AKS: "
            "enable the OIDC issuer; a self-managed cluster: publish the discovery document "
            "and JWKS)"
        )
    if code == "AADSTS700222":
        return (
            f"the token from {source} was issued by Entra ID and is not a managed identity's: "
            "a federated credential accepts tokens of an external issuer (or of a managed "
            "identity) only"
        )
    return f"no federated credential on {app} matches the token ({claims.describe()}): {steps}"
