"""Delegated scopes as Entra reads them: one resource per request (Graph, Exchange), its
permissions, the reserved OpenID scopes, `/.default`, and well-known resource aliases."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.emulator.login import LoginError, missing

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
GRAPH = "https://graph.microsoft.com"
EXCHANGE = "https://outlook.office.com"
EXCHANGE_ALIASES = frozenset({"https://outlook.office.com", "https://outlook.office365.com"})
RESERVED_SCOPES = ("openid", "profile", "email", "offline_access")
# Well-known application ids → resource URIs (scopes may name either).
RESOURCE_ALIASES = {
    "00000003-0000-0000-c000-000000000000": GRAPH,
    "00000002-0000-0ff1-ce00-000000000000": "https://outlook.office365.com",
}
GRAPH_DEFAULT_SCOPES = ("Mail.Send", "User.Read")  # what `/.default` stands for (consented)
EXCHANGE_DEFAULT_SCOPES = ("SMTP.Send",)
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1"})
RESPONSE_MODES = frozenset({"query", "fragment", "form_post"})
NO_STORE = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}


@dataclass(frozen=True)
class ScopeRequest:
    """A delegated `scope` parameter: one resource, its permissions, and the OIDC extras."""

    requested: tuple[str, ...]  # as sent (echoed as the response's `scope`)
    resource: str  # the access token's `aud`
    permissions: tuple[str, ...]  # short names, for `scp`
    reserved: frozenset[str]  # openid, profile, email, offline_access (lower case)

    @property
    def scp(self) -> str:
        extras = [s for s in RESERVED_SCOPES if s in self.reserved]
        return " ".join([*self.permissions, *extras])


def parse_scope(scope: str | None) -> ScopeRequest:
    if not scope or not scope.split():
        raise missing("scope")
    requested = tuple(dict.fromkeys(scope.split()))
    reserved = frozenset(s.lower() for s in requested if s.lower() in RESERVED_SCOPES)
    resources: dict[str, tuple[str, list[str]]] = {}
    for item in requested:
        if item.lower() in RESERVED_SCOPES:
            continue
        resource, name = _split_scope(item, scope)
        resources.setdefault(resource.lower(), (resource, []))[1].append(name)
    if len(resources) > 1:
        raise LoginError(
            400,
            "invalid_scope",
            28000,
            "Provided value for the input parameter scope is not valid because it contains more "
            f"than one resource. Scope {scope} is not valid.",
        )
    resource, names = next(iter(resources.values()), (GRAPH, ["User.Read"]))
    permissions: dict[str, str] = {}
    for name in names:
        expanded = _default_scopes(resource) if name.lower() == ".default" else (name,)
        for permission in expanded:
            permissions.setdefault(permission.lower(), permission)
    return ScopeRequest(requested, resource, tuple(permissions.values()), reserved)


def _split_scope(item: str, scope: str) -> tuple[str, str]:
    if "/" not in item:
        return GRAPH, item  # a bare permission is Graph's
    resource, _, name = item.rpartition("/")
    resource = resource.rstrip("/")
    if not resource or not name:
        raise LoginError(
            400,
            "invalid_scope",
            70011,
            f"The provided value for the input parameter 'scope' "
            f"is not valid. The scope {scope} is not valid.",
        )
    return RESOURCE_ALIASES.get(resource.lower(), resource), name


def _default_scopes(resource: str) -> tuple[str, ...]:
    if resource.lower() in EXCHANGE_ALIASES:
        return EXCHANGE_DEFAULT_SCOPES
    return GRAPH_DEFAULT_SCOPES
