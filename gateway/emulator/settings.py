"""What an emulator run is configured with: address, state directory, app registrations, limits.

`EmulatorApp` is one Entra app registration (tenant, client id, a secret and/or a certificate,
the application roles an admin consented to). With no apps the emulator runs in "open mode":
any tenant, client id and credential gets a token with Mail.Send and Mail.ReadWrite, which is
what a demo or a quick dry run wants. `load_apps` reads the YAML file behind `--apps`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gateway.emulator.faults import Faults
from gateway.emulator.pki import load_certificates

OPEN_MODE_ROLES: tuple[str, ...] = ("Mail.Send", "Mail.ReadWrite")
MIB = 1024 * 1024


@dataclass(frozen=True)
class EmulatorApp:
    """An Entra app registration the login routes accept."""

    tenant_id: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    certificate_pem: bytes | None = field(default=None, repr=False)  # public cert(s), PEM
    roles: tuple[str, ...] = ("Mail.Send",)
    secret_expired: bool = False

    def __post_init__(self) -> None:
        if self.certificate_pem is not None:
            try:
                load_certificates(self.certificate_pem)
            except ValueError as exc:
                raise ValueError(
                    f"app {self.client_id}: certificate_pem is not a PEM certificate: {exc}"
                ) from None


@dataclass(frozen=True, kw_only=True)
class EmulatorSettings:
    """Everything `Emulator` needs; all but `state_dir` have defaults."""

    host: str = "127.0.0.1"
    port: int = 0  # 0 = any free port; read the real one from Emulator.base_url
    state_dir: Path
    ca_out: Path | None = None
    apps: tuple[EmulatorApp, ...] = ()
    faults: Faults = field(default_factory=Faults)
    token_lifetime: int = 3599
    max_request_size: int = 4 * MIB  # Graph's request-body limit
    max_message_size: int = 150 * MIB  # Exchange Online's highest configurable MaxSendSize
    min_upload_session_size: int = 3_000_000  # "3 MB"; smaller attachments must be POSTed
    max_upload_chunk: int = 4 * MIB  # each upload PUT must be smaller than this

    @property
    def open_mode(self) -> bool:
        return not self.apps


def load_apps(path: Path) -> tuple[EmulatorApp, ...]:
    """Read app registrations from YAML: a list, or a mapping with an `apps` list.

    Each entry: `tenant_id`, `client_id`, optional `client_secret` or `client_secret_file`,
    `certificate_file` (PEM, relative paths resolve against the YAML file), `roles` (list),
    `secret_expired` (bool).
    """
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return apps_from_data(data, base_dir=path.parent)


def apps_from_data(data: Any, *, base_dir: Path) -> tuple[EmulatorApp, ...]:
    if isinstance(data, Mapping):
        data = data.get("apps")
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
    return EmulatorApp(
        tenant_id=tenant_id,
        client_id=client_id,
        client_secret=secret,
        certificate_pem=certificate,
        roles=tuple(roles),
        secret_expired=expired,
    )
