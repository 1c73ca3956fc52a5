"""Access tokens the emulator issues and accepts: compact JWTs signed ES256 with a per-run key.

Graph only accepts tokens this emulator run issued (a token from an earlier run, or one made up
by a client, fails signature validation) and only until `exp`. The claims follow what Entra puts
in app-only Graph tokens (`aud`, `iss`, `tid`, `appid`, `azp`, `roles`, `oid`, `idtyp`), so a
client that inspects its token sees the familiar shape. Also the base64url helpers for JWTs.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

CLOCK_SKEW = 300  # seconds of nbf/exp leeway, as Microsoft's validators allow


class TokenInvalid(Exception):
    """A bearer token was rejected; `reason` is one of the REASON_* constants."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


REASON_MALFORMED = "malformed"
REASON_SIGNATURE = "signature"
REASON_EXPIRED = "expired"
REASON_NOT_YET_VALID = "not_yet_valid"


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url; raises ValueError on anything else."""
    if any(ch in text for ch in "+/= \r\n\t"):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError("not base64url") from exc


def split_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """Parse a compact JWS into (header, claims, signing input, signature) without verifying."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("a JWT has three dot-separated parts")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
        signature = b64url_decode(parts[2])
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed JWT: {exc}") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ValueError("JWT header and claims must be JSON objects")  # noqa: TRY004 - bad value
    return header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), signature


def unverified_claims(token: str) -> dict[str, Any] | None:
    """The claims of a JWT-shaped token without any checks (for bookkeeping only)."""
    try:
        return split_jwt(token)[1]
    except ValueError:
        return None


class AccessTokenIssuer:
    """Signs and verifies this run's access tokens."""

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._verified: dict[str, dict[str, Any]] = {}
        self.key_id = b64url_encode(uuid.uuid4().bytes)

    def issue(self, claims: Mapping[str, Any]) -> str:
        header = {"typ": "JWT", "alg": "ES256", "kid": self.key_id}
        signing_input = (
            f"{b64url_encode(_json_bytes(header))}.{b64url_encode(_json_bytes(dict(claims)))}"
        )
        der = self._key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return f"{signing_input}.{b64url_encode(signature)}"

    def verify(self, token: str, *, now: float) -> dict[str, Any]:
        """Return the claims of a token this issuer signed that is valid at `now`."""
        cached = self._verified.get(token)
        if cached is None:
            cached = self._verify_signature(token)
            if len(self._verified) > 1024:
                self._verified.clear()
            self._verified[token] = cached
        return self._check_times(cached, now)

    def _verify_signature(self, token: str) -> dict[str, Any]:
        """Claims of a token whose signature is ours (checked once per token, then cached)."""
        try:
            header, claims, signing_input, signature = split_jwt(token)
        except ValueError as exc:
            raise TokenInvalid(REASON_MALFORMED) from exc
        if header.get("alg") != "ES256" or header.get("kid") != self.key_id or len(signature) != 64:
            raise TokenInvalid(REASON_SIGNATURE)
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        try:
            self._key.public_key().verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature as exc:
            raise TokenInvalid(REASON_SIGNATURE) from exc
        return claims

    @staticmethod
    def _check_times(claims: dict[str, Any], now: float) -> dict[str, Any]:
        exp, nbf = claims.get("exp"), claims.get("nbf", 0)
        if not isinstance(exp, int | float) or not isinstance(nbf, int | float):
            raise TokenInvalid(REASON_MALFORMED)
        if now >= exp:  # one clock for issuer and validator: no leeway, so expiry can be tested
            raise TokenInvalid(REASON_EXPIRED)
        if now + CLOCK_SKEW < nbf:
            raise TokenInvalid(REASON_NOT_YET_VALID)
        return claims

    def jwks(self) -> dict[str, Any]:
        """The public key as a JWK Set, served at `/{tenant}/discovery/v2.0/keys`."""
        numbers = self._key.public_key().public_numbers()
        return {
            "keys": [
                {
                    "kty": "EC",
                    "use": "sig",
                    "alg": "ES256",
                    "crv": "P-256",
                    "kid": self.key_id,
                    "x": b64url_encode(numbers.x.to_bytes(32, "big")),
                    "y": b64url_encode(numbers.y.to_bytes(32, "big")),
                }
            ]
        }


def _json_bytes(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8")
