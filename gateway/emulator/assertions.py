"""Checks a certificate client assertion the way Entra ID does.

A confidential client can prove itself with a JWT signed by its private key instead of a secret
(RFC 7523, `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`). Entra
finds the registered certificate by the thumbprint in the JWT header (`x5t` = SHA-1 with RS256, as
msal sends for `{"thumbprint": …}`, or `x5t#S256` = SHA-256 with PS256, as msal sends for
`{"public_certificate": …}`), verifies the signature with that certificate's public key, then
the claims: `iss` = `sub` = client id, `aud` = the token endpoint, `exp` in the future. Each
failure carries the AADSTS code and wording Entra uses, so a client's error handling is exercised.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from gateway.emulator.pki import thumbprints
from gateway.emulator.tokens import CLOCK_SKEW, b64url_decode, split_jwt

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_ENTRA_TIME = "%m/%d/%Y %H:%M:%S"
_DOCS = (
    "Review the documentation at "
    "https://learn.microsoft.com/entra/identity-platform/certificate-credentials ."
)


class AssertionRejected(Exception):
    """Entra's answer to a bad assertion: HTTP status, OAuth error, AADSTS number and text."""

    def __init__(self, status: int, error: str, code: int, text: str) -> None:
        super().__init__(f"AADSTS{code}: {text}")
        self.status, self.error, self.code, self.text = status, error, code, text


def verify_client_assertion(
    assertion: str,
    *,
    client_id: str,
    certificates: Sequence[x509.Certificate],
    audiences: Collection[str],
    now: float,
) -> None:
    """Raise AssertionRejected unless `assertion` proves possession of a registered key."""
    try:
        header, claims, signing_input, signature = split_jwt(assertion)
    except ValueError as exc:
        raise AssertionRejected(
            400, "invalid_request", 50027, "JWT token is invalid or malformed."
        ) from exc

    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise AssertionRejected(
            401,
            "invalid_client",
            700021,
            f"Client assertion application identifier doesn't match 'client_id' parameter. {_DOCS}",
        )

    certificate, presented = _find_certificate(header, certificates)
    if certificate is None:
        raise AssertionRejected(
            401,
            "invalid_client",
            700027,
            "The certificate with identifier used to sign the client assertion is not registered "
            f"on application. [Reason - The key was not found., Thumbprint of key used by client: "
            f"'{presented}', Please visit the Azure Portal, Graph Explorer or directly use MS "
            f"Graph to see configured keys for app Id '{client_id}'. {_DOCS}]",
        )

    if not _signature_ok(header.get("alg"), certificate, signing_input, signature):
        start = certificate.not_valid_before_utc.strftime(_ENTRA_TIME)
        end = certificate.not_valid_after_utc.strftime(_ENTRA_TIME)
        raise AssertionRejected(
            401,
            "invalid_client",
            700027,
            "Client assertion contains an invalid signature. [Reason - The provided signature "
            "value did not match the expected signature value., Thumbprint of key used by "
            f"client: '{presented}', Found key 'Start={start}, End={end}']",
        )

    audience = claims.get("aud")
    audience_ok = isinstance(audience, str) and audience.rstrip("/") in {
        a.rstrip("/") for a in audiences
    }
    if not audience_ok:
        raise AssertionRejected(
            401,
            "invalid_client",
            700023,
            f"Client assertion audience claim does not match Realm issuer. {_DOCS}",
        )

    exp, nbf = claims.get("exp"), claims.get("nbf", 0)
    in_window = (
        isinstance(exp, int | float)
        and isinstance(nbf, int | float)
        and now < exp + CLOCK_SKEW
        and nbf <= now + CLOCK_SKEW
    )
    if not in_window:
        expiry = _iso(exp) if isinstance(exp, int | float) else "(missing)"
        raise AssertionRejected(
            401,
            "invalid_client",
            700024,
            f"Client assertion is not within its valid time range. Current time: {_iso(now)}, "
            f"expiry time of assertion {expiry}. {_DOCS}",
        )


def _find_certificate(
    header: dict[str, object], certificates: Sequence[x509.Certificate]
) -> tuple[x509.Certificate | None, str]:
    """The registered certificate the header's thumbprint names, and that thumbprint in hex."""
    for name, index in (("x5t#S256", 1), ("x5t", 0)):
        value = header.get(name)
        if not isinstance(value, str):
            continue
        try:  # msal pads these ("…=") although JWS says unpadded; Entra takes both
            presented = b64url_decode(value.rstrip("="))
        except ValueError:
            return None, value
        for certificate in certificates:
            if thumbprints(certificate)[index] == presented:
                return certificate, presented.hex().upper()
        return None, presented.hex().upper()
    return None, ""


def _signature_ok(
    alg: object, certificate: x509.Certificate, signing_input: bytes, signature: bytes
) -> bool:
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    if alg == "RS256":
        pad: padding.AsymmetricPadding = padding.PKCS1v15()
    elif alg == "PS256":
        pad = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
    else:  # Entra accepts only RSA signatures for certificate credentials
        return False
    try:
        key.verify(signature, signing_input, pad, hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime(_ENTRA_TIME)
