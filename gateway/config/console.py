"""The `console` section: the operator console's address, TLS, users, API tokens and sessions.

Off unless `console.listen` is given. Its users are separate from the SMTP AUTH `users` (a
printer's password never opens the console), each with a role: `viewer` reads, `operator`
also acts on the queue. Scripts use bearer tokens with a role of their own.
"""

from __future__ import annotations

import ipaddress

from gateway.config.model import (
    ConsoleMicrosoft,
    ConsoleSettings,
    ConsoleToken,
    ConsoleUser,
    CredentialKind,
    Tenant,
    TlsFiles,
)
from gateway.config.reader import Reader, check_unique, join
from gateway.config.smtp import read_tls_files

ROLES = ("viewer", "operator")
_MIN_TOKEN_LENGTH = 32


def read_console(
    reader: Reader, value: object, smtp_tls: TlsFiles | None, tenants: tuple[Tenant, ...] = ()
) -> ConsoleSettings | None:
    """The `console` section (None: no console)."""
    keys = (
        "listen",
        "tls",
        "users",
        "api_tokens",
        "session_idle_timeout",
        "lockout",
        "silent_after",
        "microsoft",
    )
    node = reader.mapping(value, "console", keys)
    if not node or node.get("listen") in (None, False, ""):
        return None
    listen = reader.string(node, "listen", "console") or ""
    address = _read_listen(reader, listen)
    tls = _read_tls(reader, node, smtp_tls)
    users = tuple(
        user
        for where, item in reader.items(node.get("users"), "console.users")
        if (user := _read_user(reader, item, where)) is not None
    )
    tokens = tuple(
        token
        for where, item in reader.items(node.get("api_tokens"), "console.api_tokens")
        if (token := _read_token(reader, item, where)) is not None
    )
    check_unique(reader, "console.users", [user.username for user in users], "username")
    check_unique(reader, "console.api_tokens", [token.name for token in tokens], "name")
    microsoft = _read_microsoft(reader, node.get("microsoft"), tenants)
    if not node.get("users") and not node.get("api_tokens") and not node.get("microsoft"):
        reader.issue(
            "console.users",
            "the console is enabled but nobody may sign in",
            "add users (password_hash from: smtp-graph-gateway hash-password), api_tokens "
            "or microsoft",
        )
    lockout = reader.mapping(node.get("lockout"), "console.lockout", ("failures", "duration"))
    lockout = lockout or {}
    idle = reader.duration(node, "session_idle_timeout", "console", 1800.0, minimum=60.0)
    failures = reader.integer(lockout, "failures", "console.lockout", 5, minimum=1, maximum=100)
    duration = reader.duration(lockout, "duration", "console.lockout", 300.0, minimum=1.0)
    silent_after = reader.duration(node, "silent_after", "console", 86400.0, minimum=60.0)
    if address is None:
        return None
    host, port = address
    if tls is None and not ipaddress.ip_address(host).is_loopback:
        reader.warn(
            "console.listen",
            f"the console listens on {host} without TLS: passwords and session cookies "
            "cross the network in clear",
            "set console.tls: true (the smtp.tls certificate), or put it behind a TLS proxy",
        )
    return ConsoleSettings(
        address=host,
        port=port,
        tls=tls,
        users=users,
        api_tokens=tokens,
        session_idle_timeout=idle,
        lockout_failures=failures,
        lockout_duration=duration,
        silent_after=silent_after,
        microsoft=microsoft,
    )


def _read_listen(reader: Reader, listen: str) -> tuple[str, int] | None:
    host, _, port_text = listen.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        port = int(port_text)
        if not 0 <= port <= 65535:
            raise ValueError(port)  # noqa: TRY301 - one message for every malformed form
    except ValueError:
        reader.issue(
            "console.listen",
            f"not an address:port: {listen!r}",
            "e.g. 127.0.0.1:8026, or a management network's address",
        )
        return None
    return host, port


def _read_tls(
    reader: Reader, node: dict[str, object], smtp_tls: TlsFiles | None
) -> TlsFiles | None:
    """`tls: true` (the listeners' certificate, `smtp.tls`), a `tls` block of its own, or off."""
    value = node.get("tls")
    if value in (None, False):
        return None
    if value is True:
        if smtp_tls is None:
            reader.issue(
                "console.tls",
                "true means the listeners' certificate, but smtp.tls is not set",
                "set smtp.tls, or give console.tls its own cert_file and key_file",
            )
        return smtp_tls
    if not isinstance(value, dict):
        reader.issue(
            "console.tls", "expected true, false or {cert_file, key_file}", "e.g. tls: true"
        )
        return None
    return read_tls_files(reader, node, "console")


def _read_user(reader: Reader, value: object, path: str) -> ConsoleUser | None:
    node = reader.mapping(value, path, ("username", "password_hash", "password_hash_file", "role"))
    if node is None:
        return None
    username = reader.required_string(node, "username", path, "the console sign-in name")
    password_hash = reader.secret(node, "password_hash", path, required=True, what="password hash")
    role = reader.choice(node, "role", path, ROLES, "viewer")
    if password_hash is not None and not password_hash.reveal().startswith("$scrypt$"):
        reader.issue(
            join(path, "password_hash"),
            "is not a password hash",
            "create one with: smtp-graph-gateway hash-password",
        )
        return None
    if password_hash is None or not username:
        return None
    return ConsoleUser(username=username, password_hash=password_hash, role=role)


def _read_token(reader: Reader, value: object, path: str) -> ConsoleToken | None:
    node = reader.mapping(value, path, ("name", "token", "token_file", "role"))
    if node is None:
        return None
    name = reader.required_string(node, "name", path, "who uses it, e.g. monitoring")
    token = reader.secret(node, "token", path, required=True, what="API token")
    role = reader.choice(node, "role", path, ROLES, "viewer")
    if token is not None and len(token.reveal()) < _MIN_TOKEN_LENGTH:
        reader.issue(
            join(path, "token"),
            f"shorter than {_MIN_TOKEN_LENGTH} characters",
            'make one with: python3 -c "import secrets; print(secrets.token_urlsafe(32))"',
        )
        return None
    if token is None or not name:
        return None
    return ConsoleToken(name=name, token=token, role=role)


def _read_microsoft(
    reader: Reader, value: object, tenants: tuple[Tenant, ...]
) -> ConsoleMicrosoft | None:
    """`console.microsoft`: sign in through a configured tenant's app registration."""
    path = "console.microsoft"
    node = reader.mapping(value, path, ("tenant", "operators", "viewers", "redirect_uri"))
    if not node:
        return None
    name = reader.required_string(node, "tenant", path, "the name of a tenant in tenants")
    operators = reader.string_list(node, "operators", path)
    viewers = reader.string_list(node, "viewers", path)
    redirect_uri = reader.string(node, "redirect_uri", path) or ""
    tenant = next((t for t in tenants if t.name == name), None)
    if name and tenant is None:
        reader.issue(join(path, "tenant"), f"no tenant named {name!r}", "name one in tenants")
    elif tenant is not None and tenant.credential_kind not in (
        CredentialKind.CLIENT_SECRET,
        CredentialKind.CERTIFICATE,
    ):
        reader.issue(
            join(path, "tenant"),
            f"tenant {name!r} signs in with a {tenant.credential_kind}",
            "use a tenant whose app has a client secret or certificate",
        )
    if not operators and not viewers:
        reader.issue(
            path,
            "nobody would be let in: operators and viewers are both empty",
            "list app role values or group object IDs, e.g. operators: [Console.Operator]",
        )
    if redirect_uri and not redirect_uri.startswith(
        ("https://", "http://localhost", "http://127.")
    ):
        reader.issue(
            join(path, "redirect_uri"),
            f"not an https URL: {redirect_uri!r}",
            "e.g. https://relay.contoso.com:8026/signin/microsoft/callback",
        )
    if tenant is None or (not operators and not viewers):
        return None
    return ConsoleMicrosoft(name, operators, viewers, redirect_uri)
