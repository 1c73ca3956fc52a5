"""What an emulator run is configured with: address, state directory, apps, users, limits.

`EmulatorApp` is one Entra app registration (tenant, client id, a secret and/or a certificate
and/or federated credentials, the application roles an admin consented to, and the other
tenants a multitenant app is provisioned in; an app with no credential at all is a public
client, which delegated sign-in accepts without a credential). With no apps the emulator
runs in "open mode": any tenant, client id and credential gets a token with Mail.Send and
Mail.ReadWrite, which is what a demo or a quick dry run wants.

`EmulatorUser` is a user who can sign in (device code or authorization code): a work account in
a tenant, or a personal Microsoft account (tenant `consumers`, stored as the fixed MSA tenant id
`MSA_TENANT_ID`), with the app roles and groups its ID tokens carry (`roles`, `groups`: what
the gateway's console maps to its own roles). With no users, any username signs in. The
machine's managed identities (identities.py) are `managed_identities`. `load_apps`, `load_users` and
`load_managed_identities` read the YAML file behind `--apps` (a list of apps, or a mapping with
`apps`, `users` and `managed_identities` lists).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gateway.emulator.faults import Faults
from gateway.emulator.identities import (
    EmulatorManagedIdentity,
    FederatedCredential,
    check_identities,
    federated_from_data,
    managed_identities_from_data,
)
from gateway.emulator.pki import load_certificates

OPEN_MODE_ROLES: tuple[str, ...] = ("Mail.Send", "Mail.ReadWrite")
MIB = 1024 * 1024
DAY = 86400
# The tenant every personal Microsoft account (outlook.com, hotmail.com, live.com …) lives in.
MSA_TENANT_ID = "9188040d-6c67-4c5b-b112-36a304b66dad"


@dataclass(frozen=True)
class EmulatorApp:
    """An Entra app registration the login routes accept."""

    tenant_id: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    certificate_pem: bytes | None = field(default=None, repr=False)  # public cert(s), PEM
    roles: tuple[str, ...] = ("Mail.Send",)  # add "SMTP.SendAsApp" for app-only SMTP AUTH
    secret_expired: bool = False
    # "Allow public client flows": delegated grants without a credential. None: yes exactly
    # when the app has no credential (secret, certificate or federated credential).
    public_client: bool | None = None
    federated_credentials: tuple[FederatedCredential, ...] = ()
    # A multitenant app provisioned (and consented) in these tenants too: it gets tokens there.
    other_tenants: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.certificate_pem is not None:
            try:
                load_certificates(self.certificate_pem)
            except ValueError as exc:
                raise ValueError(
                    f"app {self.client_id}: certificate_pem is not a PEM certificate: {exc}"
                ) from None

    @property
    def is_public_client(self) -> bool:
        if self.public_client is not None:
            return self.public_client
        return (
            self.client_secret is None
            and self.certificate_pem is None
            and not self.federated_credentials
        )

    def serves(self, tenant: str) -> bool:
        """Whether the app has a service principal in `tenant` (its own, or one it was added to)."""
        lowered = tenant.lower()
        return any(t.lower() == lowered for t in (self.tenant_id, *self.other_tenants))


@dataclass(frozen=True)
class EmulatorUser:
    """Someone who can sign in with the device-code or authorization-code flow."""

    username: str  # the UPN / sign-in name, also the mailbox
    tenant_id: str  # "consumers" (or MSA_TENANT_ID) for a personal Microsoft account
    display_name: str | None = None
    object_id: str | None = None  # default: derived from the username
    # App roles assigned to the user and groups it is in: the `roles` and `groups` claims of
    # its ID tokens (what the gateway's console maps to viewer and operator).
    roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        username = self.username.strip().lower()
        if username.count("@") != 1 or username.startswith("@") or username.endswith("@"):
            raise ValueError(f"user {self.username!r}: the username must look like name@domain")
        object.__setattr__(self, "username", username)
        tenant = self.tenant_id.strip()
        if not tenant:
            raise ValueError(f"user {username}: tenant_id must not be empty")
        if tenant.lower() in ("consumers", MSA_TENANT_ID):
            tenant = MSA_TENANT_ID
        elif tenant.lower() in ("common", "organizations"):
            raise ValueError(f"user {username}: {tenant} is not a tenant a user can belong to")
        object.__setattr__(self, "tenant_id", tenant)
        if self.object_id is None:
            oid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"emulator-user:{username}"))
            object.__setattr__(self, "object_id", oid)
        if self.display_name is None:
            name = username.partition("@")[0].replace(".", " ").title()
            object.__setattr__(self, "display_name", name)

    @property
    def is_msa(self) -> bool:
        """A personal Microsoft account (signs in through `consumers`, not `organizations`)."""
        return self.tenant_id == MSA_TENANT_ID

    @property
    def oid(self) -> str:
        assert self.object_id is not None  # set in __post_init__
        return self.object_id

    @property
    def name(self) -> str:
        assert self.display_name is not None  # set in __post_init__
        return self.display_name

    def to_json(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "tenant_id": self.tenant_id,
            "display_name": self.display_name,
            "object_id": self.object_id,
            "msa": self.is_msa,
        }


KEEP_MESSAGES = 1000  # for a long-running emulator: it must not hold every message it took


@dataclass(frozen=True, kw_only=True)
class EmulatorSettings:
    """Everything `Emulator` needs; all but `state_dir` have defaults."""

    host: str = "127.0.0.1"
    port: int = 0  # 0 = any free port; read the real one from Emulator.base_url
    state_dir: Path
    ca_out: Path | None = None
    apps: tuple[EmulatorApp, ...] = ()
    users: tuple[EmulatorUser, ...] = ()  # none: any username signs in
    faults: Faults = field(default_factory=Faults)
    token_lifetime: int = 3599  # access tokens (and id tokens), seconds
    refresh_token_lifetime: int = 90 * DAY  # Entra's inactivity limit for refresh tokens
    single_use_refresh_tokens: bool = False  # Entra keeps a redeemed refresh token valid
    device_code_lifetime: int = 900  # expires_in of a device code, as Entra
    device_code_interval: int = 5  # the polling interval a device-code client is told (0 ok)
    # Polls answered `authorization_pending` before the code is approved automatically (as the
    # first user allowed in the tenant); None: only an explicit approval signs in.
    device_code_pending_polls: int | None = 1
    smtp_host: str | None = None  # None: the same host as the HTTPS listener
    smtp_port: int | None = None  # None: no SMTP listener; 0: any free port (Emulator.smtp_address)
    # Read DATA as lenient servers do, a bare CR ending a line too (the servers SMTP smuggling
    # works against), so a test can show that a client's dot-stuffing protects them as well.
    smtp_bare_cr_ends_lines: bool = False
    # Non-empty: the SMTP listener stands in for High Volume Email (smtp-hve.office365.com):
    # only these accounts may send (anyone else: 550 at MAIL FROM), and only to the
    # organisation (the domains of these accounts and of `users`; others: 550 at RCPT TO).
    smtp_hve_accounts: tuple[str, ...] = ()
    max_request_size: int = 4 * MIB  # Graph's request-body limit
    max_message_size: int = 150 * MIB  # Exchange Online's highest configurable MaxSendSize
    min_upload_session_size: int = 3_000_000  # "3 MB"; smaller attachments must be POSTed
    max_upload_chunk: int = 4 * MIB  # each upload PUT must be smaller than this
    keep_messages: int | None = None  # delivered messages kept in memory (None: all)
    # The machine's managed identities, served at /metadata/identity/oauth2/token (IMDS) and
    # /msi/token (App Service, which wants `identity_header` in X-IDENTITY-HEADER).
    managed_identities: tuple[EmulatorManagedIdentity, ...] = ()
    identity_header: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)

    def __post_init__(self) -> None:
        problems = [
            f"{name} must not be negative"
            for name in (
                "token_lifetime",
                "refresh_token_lifetime",
                "device_code_lifetime",
                "device_code_interval",
            )
            if getattr(self, name) < 0
        ]
        if self.device_code_pending_polls is not None and self.device_code_pending_polls < 0:
            problems.append("device_code_pending_polls must not be negative")
        if self.keep_messages is not None and self.keep_messages < 1:
            problems.append("keep_messages must be at least 1")
        if self.smtp_port is not None and not 0 <= self.smtp_port <= 65535:
            problems.append(f"smtp_port out of range: {self.smtp_port}")
        names = [user.username for user in self.users]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            problems.append(f"users listed twice: {', '.join(duplicates)}")
        problems += check_identities(self.managed_identities)
        if problems:
            raise ValueError("invalid emulator settings: " + "; ".join(problems))

    @property
    def open_mode(self) -> bool:
        return not self.apps

    @property
    def open_users(self) -> bool:
        """No users configured: any username signs in."""
        return not self.users


def load_apps(path: Path) -> tuple[EmulatorApp, ...]:
    """Read app registrations from YAML: a list, or a mapping with an `apps` list.

    Each entry: `tenant_id`, `client_id`, optional `client_secret` or `client_secret_file`,
    `certificate_file` (PEM, relative paths resolve against the YAML file), `roles` (list),
    `secret_expired` (bool), `public_client` (bool; default: no credential at all),
    `federated_credentials` (list of `issuer`, `subject`, `audiences`, `name`) and
    `other_tenants` (tenant IDs a multitenant app is provisioned in).
    """
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return apps_from_data(data, base_dir=path.parent)


def load_users(path: Path) -> tuple[EmulatorUser, ...]:
    """Read the `users` list of the YAML behind `--apps` (none when the file is a plain list).

    Each entry: `username`, `tenant_id` (`consumers` for a personal Microsoft account), optional
    `display_name` and `object_id`.
    """
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return users_from_data(data.get("users") if isinstance(data, Mapping) else None)


def load_managed_identities(path: Path) -> tuple[EmulatorManagedIdentity, ...]:
    """Read the `managed_identities` list of the YAML behind `--apps` (each: `tenant_id`,
    `client_id`, optional `object_id`, `system_assigned`, `roles`)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return managed_identities_from_data(
        data.get("managed_identities") if isinstance(data, Mapping) else None
    )


def users_from_data(data: Any) -> tuple[EmulatorUser, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        raise TypeError("users: expected a list of users")
    users = []
    problems: list[str] = []
    for index, entry in enumerate(data):
        where = f"users[{index}]"
        if not isinstance(entry, Mapping):
            problems.append(f"{where}: expected a mapping")
            continue
        try:
            users.append(_user_from_entry(entry))
        except (ValueError, TypeError) as exc:
            problems.append(f"{where}: {exc}")
    if problems:
        raise ValueError("; ".join(problems))
    return tuple(users)


_USER_KEYS = frozenset({"username", "tenant_id", "display_name", "object_id", "roles", "groups"})


def _user_from_entry(entry: Mapping[str, Any]) -> EmulatorUser:
    unknown = sorted(set(entry) - _USER_KEYS)
    if unknown:
        raise ValueError(f"unknown key(s): {', '.join(unknown)}")
    username, tenant_id = entry.get("username"), entry.get("tenant_id")
    if not isinstance(username, str) or not isinstance(tenant_id, str):
        raise TypeError("username and tenant_id are required strings")
    display_name, object_id = entry.get("display_name"), entry.get("object_id")
    for key, value in (("display_name", display_name), ("object_id", object_id)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{key} must be a string")
    lists: dict[str, tuple[str, ...]] = {}
    for key in ("roles", "groups"):
        value = entry.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise TypeError(f"{key} must be a list of strings")
        lists[key] = tuple(value)
    return EmulatorUser(
        username, tenant_id, display_name, object_id, lists["roles"], lists["groups"]
    )


def apps_from_data(data: Any, *, base_dir: Path) -> tuple[EmulatorApp, ...]:
    if isinstance(data, Mapping):
        data = data.get("apps", [])
    if not isinstance(data, list):
        raise TypeError("apps: expected a list of app registrations")
    apps = []
    problems: list[str] = []
    for index, entry in enumerate(data):
        where = f"apps[{index}]"
        if not isinstance(entry, Mapping):
            problems.append(f"{where}: expected a mapping")
            continue
        try:
            apps.append(_app_from_entry(entry, base_dir))
        except (ValueError, TypeError, OSError) as exc:
            problems.append(f"{where}: {exc}")
    if problems:
        raise ValueError("; ".join(problems))
    return tuple(apps)


_APP_KEYS = frozenset(
    {
        "tenant_id",
        "client_id",
        "client_secret",
        "client_secret_file",
        "certificate_file",
        "roles",
        "secret_expired",
        "public_client",
        "federated_credentials",
        "other_tenants",
    }
)


def _app_from_entry(entry: Mapping[str, Any], base_dir: Path) -> EmulatorApp:
    unknown = sorted(set(entry) - _APP_KEYS)
    if unknown:
        raise ValueError(f"unknown key(s): {', '.join(unknown)}")
    tenant_id, client_id = entry.get("tenant_id"), entry.get("client_id")
    if not isinstance(tenant_id, str) or not isinstance(client_id, str):
        raise TypeError("tenant_id and client_id are required strings")
    secret = entry.get("client_secret")
    if "client_secret_file" in entry:
        secret = (base_dir / str(entry["client_secret_file"])).read_text(encoding="utf-8").strip()
    if secret is not None and not isinstance(secret, str):
        raise TypeError("client_secret must be a string")
    certificate = None
    if "certificate_file" in entry:
        certificate = (base_dir / str(entry["certificate_file"])).read_bytes()
    roles = entry.get("roles", ["Mail.Send"])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise TypeError("roles must be a list of strings")
    expired = entry.get("secret_expired", False)
    if not isinstance(expired, bool):
        raise TypeError("secret_expired must be true or false")
    public_client = entry.get("public_client")
    if public_client is not None and not isinstance(public_client, bool):
        raise TypeError("public_client must be true or false")
    others = entry.get("other_tenants", [])
    if not isinstance(others, list) or not all(isinstance(t, str) for t in others):
        raise TypeError("other_tenants must be a list of tenant IDs")
    return EmulatorApp(
        tenant_id=tenant_id,
        client_id=client_id,
        client_secret=secret,
        certificate_pem=certificate,
        roles=tuple(roles),
        secret_expired=expired,
        public_client=public_client,
        federated_credentials=federated_from_data(entry.get("federated_credentials")),
        other_tenants=tuple(others),
    )
