"""Test OIDC issuers: stand-ins for a Kubernetes cluster's service-account token issuer.

Workload identity federation trusts an external issuer: Entra ID reads
`{issuer}/.well-known/openid-configuration`, follows its `jwks_uri` and checks the token's
signature with those keys. The emulator serves any number of such issuers at
`{base}/oidc/NAME` — each made on first use with its own RSA key, as a cluster's API server
has — so tests need no second server:

- `GET /oidc/NAME/.well-known/openid-configuration` and `GET /oidc/NAME/openid/v1/jwks`
  (the paths a Kubernetes API server uses);
- `POST /_emulator/oidc/NAME/token`, JSON `{"subject", "audience", "lifetime", "iss"}` →
  `{"token": …}`: a projected service-account token as the kubelet would write it (RS256,
  `aud` a list, `kubernetes.io` claims when the subject is `system:serviceaccount:NS:NAME`).
  `iss` overrides the issuer claim (a token that claims another issuer than the key that
  signed it: its signature does not verify). `Emulator.mint_service_account_token` is the same
  for Python callers.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from gateway.emulator.identities import TOKEN_EXCHANGE
from gateway.emulator.tokens import b64url_encode

if TYPE_CHECKING:  # state.py holds an OidcIssuers
    from gateway.emulator.state import EmulatorState

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
MAX_ISSUERS = 64  # issuers are made on demand: bound how many one run keeps
_SERVICE_ACCOUNT = re.compile(r"^system:serviceaccount:([^:]+):([^:]+)$")


class IssuerError(ValueError):
    """An issuer name or token request the emulator will not serve."""


class OidcIssuers:
    """The signing keys of this run's test issuers, by name."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[str, rsa.RSAPrivateKey]] = {}

    def _key(self, name: str) -> tuple[str, rsa.RSAPrivateKey]:
        if not _NAME.match(name):
            raise IssuerError(f"issuer names are lower-case letters, digits and '-': {name!r}")
        if name not in self._keys:
            if len(self._keys) >= MAX_ISSUERS:
                raise IssuerError(f"at most {MAX_ISSUERS} test issuers per run")
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self._keys[name] = (b64url_encode(uuid.uuid4().bytes), key)
        return self._keys[name]

    @staticmethod
    def url(base: str, name: str) -> str:
        return f"{base}/oidc/{name}"

    def discovery(self, base: str, name: str) -> dict[str, Any]:
        self._key(name)
        issuer = self.url(base, name)
        return {
            "issuer": issuer,
            "jwks_uri": f"{issuer}/openid/v1/jwks",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    def jwks(self, name: str) -> dict[str, Any]:
        kid, key = self._key(name)
        numbers = key.public_key().public_numbers()
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "use": "sig",
                    "alg": "RS256",
                    "kid": kid,
                    "n": b64url_encode(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8)),
                    "e": b64url_encode(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8)),
                }
            ]
        }

    def mint(
        self,
        base: str,
        name: str,
        *,
        subject: str,
        audience: str = TOKEN_EXCHANGE,
        lifetime: int = 3600,
        now: float,
        iss: str | None = None,
    ) -> str:
        """A service-account token signed by issuer `name` (claiming `iss` if given)."""
        if not subject:
            raise IssuerError("a token needs a subject")
        kid, key = self._key(name)
        issued = int(now)
        claims: dict[str, Any] = {
            "aud": [audience],
            "exp": issued + lifetime,
            "iat": issued,
            "nbf": issued,
            "iss": iss if iss is not None else self.url(base, name),
            "sub": subject,
            "jti": str(uuid.uuid4()),
        }
        account = _SERVICE_ACCOUNT.match(subject)
        if account:
            claims["kubernetes.io"] = {
                "namespace": account.group(1),
                "serviceaccount": {"name": account.group(2), "uid": str(uuid.uuid4())},
            }
        header = {"alg": "RS256", "kid": kid, "typ": "JWT"}
        signing_input = f"{_segment(header)}.{_segment(claims)}"
        signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url_encode(signature)}"


def _segment(value: dict[str, Any]) -> str:
    return b64url_encode(json.dumps(value, separators=(",", ":")).encode("utf-8"))


class OidcRoutes:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/oidc/{name}/.well-known/openid-configuration", self.discovery)
        router.add_get("/oidc/{name}/openid/v1/jwks", self.jwks)
        router.add_post("/_emulator/oidc/{name}/token", self.mint)

    async def discovery(self, request: web.Request) -> web.Response:
        try:
            document = self.state.oidc.discovery(
                self.state.external_base(request), request.match_info["name"]
            )
        except IssuerError as exc:
            raise web.HTTPNotFound(text=f"{exc}\n") from None
        return web.json_response(document)

    async def jwks(self, request: web.Request) -> web.Response:
        try:
            return web.json_response(self.state.oidc.jwks(request.match_info["name"]))
        except IssuerError as exc:
            raise web.HTTPNotFound(text=f"{exc}\n") from None

    async def mint(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.text() or "{}")
        except ValueError as exc:
            return web.json_response({"error": f"invalid JSON: {exc}"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"error": "expected a JSON object"}, status=400)
        subject, audience = body.get("subject"), body.get("audience", TOKEN_EXCHANGE)
        lifetime, iss = body.get("lifetime", 3600), body.get("iss")
        if not isinstance(subject, str) or not isinstance(audience, str):
            return web.json_response({"error": "subject and audience are strings"}, status=400)
        if isinstance(lifetime, bool) or not isinstance(lifetime, int):
            return web.json_response({"error": "lifetime is a number of seconds"}, status=400)
        if iss is not None and not isinstance(iss, str):
            return web.json_response({"error": "iss is a string"}, status=400)
        try:
            token = self.state.oidc.mint(
                self.state.external_base(request),
                request.match_info["name"],
                subject=subject,
                audience=audience,
                lifetime=lifetime,
                now=self.state.clock(),
                iss=iss,
            )
        except IssuerError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        self.state.log.info(
            "emulator.service_account_token", issuer=request.match_info["name"], subject=subject
        )
        return web.json_response({"token": token})
