"""Checks a federated client assertion the way Entra ID does (workload identity federation).

A client that has no secret presents a token from another issuer — a Kubernetes service-account
token, or a managed identity's token for `api://AzureADTokenExchange` — as its
`client_assertion`. Entra looks for a federated credential on the app whose issuer and subject
equal the token's `iss` and `sub` (case-sensitive) and whose audiences include its `aud`, then
fetches the issuer's signing keys by OIDC discovery (`{iss}/.well-known/openid-configuration`,
then its `jwks_uri`) and verifies the signature and lifetime. The emulator does the same, over
HTTPS, trusting its own CA as well as the system's (so its own test issuers, oidc.py, and its
own Entra issuer `{base}/TENANT/v2.0` work like any other issuer), with keys cached for a minute
and fetched again when a token names an unknown key.

Each mismatch answers with the code Entra uses: AADSTS70021 (the app has no federated credential
for this token at all), 700211 (issuer), 700213 (subject; 7002138 when it differs only in case),
700212 (audience), 700222 (an Entra access token that is not a managed identity's), 50166 (the
issuer's discovery document or keys cannot be fetched), 700027 (signature), 700024 (lifetime).
The wording follows Entra's own answers; the order in which Entra checks is not documented.
"""

from __future__ import annotations

import datetime as dt
import ssl
import time
from collections.abc import Iterable, Sequence
from typing import Any

import aiohttp
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from gateway.emulator.assertions import AssertionRejected
from gateway.emulator.identities import FederatedCredential
from gateway.emulator.tokens import CLOCK_SKEW, b64url_decode, split_jwt

_DOCS = "https://learn.microsoft.com/entra/workload-id/workload-identity-federation"
_CHECK = "Please check your federated identity credential Subject, Audience and Issuer against "
_KEYS_TTL = 60.0
_FETCH_TIMEOUT = 10.0
_ENTRA_TIME = "%m/%d/%Y %H:%M:%S"


class IssuerKeys:
    """Signing keys of external issuers, found by OIDC discovery and cached briefly."""

    def __init__(self, ca_pem: bytes, *, clock: Any = time.monotonic) -> None:
        self._ssl = ssl.create_default_context()
        if ca_pem:
            self._ssl.load_verify_locations(cadata=ca_pem.decode("ascii"))
        self._clock = clock
        self._cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._session: aiohttp.ClientSession | None = None

    async def keys(self, issuer: str, *, fresh: bool = False) -> list[dict[str, Any]]:
        """The issuer's JWKs; `OSError`/`ValueError` when they cannot be had."""
        cached = self._cache.get(issuer)
        if cached is not None and not fresh and self._clock() - cached[0] < _KEYS_TTL:
            return cached[1]
        if not issuer.startswith("https://"):
            raise ValueError("the issuer is not an https URL")
        discovery = await self._get_json(f"{issuer.rstrip('/')}/.well-known/openid-configuration")
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith("https://"):
            raise ValueError("the discovery document has no https jwks_uri")
        keys = (await self._get_json(jwks_uri)).get("keys")
        if not isinstance(keys, list):
            raise ValueError("the JWKS has no keys")  # noqa: TRY004 - a bad document, not a type
        found = [key for key in keys if isinstance(key, dict)]
        self._cache[issuer] = (self._clock(), found)
        return found

    async def _get_json(self, url: str) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl),
                timeout=aiohttp.ClientTimeout(total=_FETCH_TIMEOUT),
            )
        try:
            async with self._session.get(url) as response:
                if response.status != 200:
                    raise ValueError(f"{url} answered {response.status}")
                body = await response.json(content_type=None)
        except aiohttp.ClientError as exc:
            raise OSError(f"{url}: {type(exc).__name__}") from None
        if not isinstance(body, dict):
            raise ValueError(f"{url} is not a JSON object")  # noqa: TRY004 - a bad document
        return body

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def verify_federated_assertion(
    assertion: str,
    *,
    client_id: str,
    credentials: Sequence[FederatedCredential],
    base_urls: Iterable[str],
    keys: IssuerKeys,
    now: float,
) -> dict[str, Any]:
    """The assertion's claims, or AssertionRejected as Entra would answer it."""
    try:
        header, claims, signing_input, signature = split_jwt(assertion)
    except ValueError as exc:
        raise AssertionRejected(
            400, "invalid_request", 50027, "JWT token is invalid or malformed."
        ) from exc
    issuer, subject = str(claims.get("iss", "")), str(claims.get("sub", ""))
    audiences = _audiences(claims.get("aud"))
    bases = tuple(base_urls)
    if _entra_issued(issuer, bases) and "xms_mirid" not in claims:
        raise AssertionRejected(
            400,
            "invalid_request",
            700222,
            "AAD-issued tokens may not be used for federated identity flows.",
        )
    trusted = [(c, c.issuer_for(b)) for c in credentials for b in bases]
    if not trusted:
        raise AssertionRejected(
            400,
            "invalid_request",
            70021,
            "No matching federated identity record found for presented assertion. Assertion "
            f"Issuer: '{issuer}'. Assertion Subject: '{subject}'. Assertion Audience: "
            f"'{', '.join(audiences)}'. {_DOCS}",
        )
    same_issuer = [c for c, trusted_issuer in trusted if trusted_issuer == issuer]
    if not same_issuer:
        raise _no_match(700211, f"issuer '{issuer}'")
    matching = [c for c in same_issuer if c.subject == subject]
    if not matching:
        if any(c.subject.lower() == subject.lower() for c in same_issuer):
            raise AssertionRejected(
                401,
                "invalid_client",
                7002138,
                "No matching federated identity record found for presented assertion subject "
                f"'{subject}'. The subject matches with case-insensitive comparison, but not "
                f"with case-sensitive comparison. {_CHECK}the presented assertion. See "
                f"documentation at: {_DOCS}.",
            )
        raise _no_match(700213, f"subject '{subject}'")
    if not any(a in c.audiences for c in matching for a in audiences):
        raise _no_match(700212, f"audience '{', '.join(audiences)}'")
    try:
        jwks = await keys.keys(issuer)
        if _find_key(jwks, header) is None:  # the issuer may have rotated its keys
            jwks = await keys.keys(issuer, fresh=True)
    except (OSError, ValueError):
        raise AssertionRejected(
            400, "invalid_request", 50166, "Request to External OIDC endpoint failed."
        ) from None
    key = _find_key(jwks, header)
    if key is None or not _signature_ok(key, header, signing_input, signature):
        reason = "The key was not found." if key is None else "The signature is invalid."
        raise AssertionRejected(
            401,
            "invalid_client",
            700027,
            f"Client assertion failed signature validation. [Reason - {reason}, client_id "
            f"'{client_id}', issuer '{issuer}']",
        )
    _check_lifetime(claims, now)
    return claims


def _no_match(code: int, what: str) -> AssertionRejected:
    return AssertionRejected(
        401,
        "invalid_client",
        code,
        f"No matching federated identity record found for presented assertion {what}. "
        f"{_CHECK}the presented assertion. {_DOCS}",
    )


def _audiences(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [a for a in value if isinstance(a, str)]
    return []


def _entra_issued(issuer: str, bases: Sequence[str]) -> bool:
    """An issuer of this emulator's Entra ID: `{base}/TENANT/v2.0`."""
    for base in bases:
        rest = issuer.removeprefix(f"{base}/")
        if rest != issuer and rest.endswith("/v2.0") and rest.count("/") == 1:
            return True
    return False


def _find_key(jwks: list[dict[str, Any]], header: dict[str, Any]) -> dict[str, Any] | None:
    kid = header.get("kid")
    candidates = [key for key in jwks if kid is None or key.get("kid") == kid]
    return candidates[0] if candidates else None


def _int(value: object) -> int:
    if not isinstance(value, str):
        raise ValueError("missing key parameter")  # noqa: TRY004 - a bad key, not a bad type
    return int.from_bytes(b64url_decode(value), "big")


def _signature_ok(
    key: dict[str, Any], header: dict[str, Any], signing_input: bytes, signature: bytes
) -> bool:
    alg = header.get("alg")
    try:
        if alg == "RS256" and key.get("kty") == "RSA":
            public = rsa.RSAPublicNumbers(_int(key.get("e")), _int(key.get("n"))).public_key()
            public.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
            return True
        if alg == "ES256" and key.get("kty") == "EC" and len(signature) == 64:
            point = ec.EllipticCurvePublicNumbers(
                _int(key.get("x")), _int(key.get("y")), ec.SECP256R1()
            ).public_key()
            der = encode_dss_signature(
                int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            )
            point.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
            return True
    except (InvalidSignature, ValueError):
        return False
    return False


def _check_lifetime(claims: dict[str, Any], now: float) -> None:
    exp, nbf = claims.get("exp"), claims.get("nbf", 0)
    if (
        isinstance(exp, int | float)
        and isinstance(nbf, int | float)
        and now < exp + CLOCK_SKEW
        and nbf <= now + CLOCK_SKEW
    ):
        return
    current = dt.datetime.fromtimestamp(now, dt.UTC).strftime(_ENTRA_TIME)
    expiry = (
        dt.datetime.fromtimestamp(exp, dt.UTC).strftime(_ENTRA_TIME)
        if isinstance(exp, int | float)
        else "(missing)"
    )
    raise AssertionRejected(
        401,
        "invalid_client",
        700024,
        f"Client assertion is not within its valid time range. Current time: {current}, "
        f"expiry time of assertion {expiry}.",
    )
