"""Fuzz target `config`: YAML of any content through the configuration loader.

`gateway.config.parse_config` on the input decoded as UTF-8 (bad bytes replaced), and
`load_config` on the raw bytes written to a file, both with a scratch folder as the base of
relative paths (it holds the files the seeds name) and a fixed environment. A configuration is
either a `Config` or one `ConfigError` listing every problem: any other exception is a crash.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from gateway.config import load_config, parse_config
from gateway.errors import ConfigError

MAX_LEN = 8 * 1024
ENV = {"CONTOSO_SECRET": "s3cr3t-value", "HOME": "/nonexistent"}
_FILES = {
    "contoso-secret": "s3cr3t-from-file\n",
    "erp.hash": "$scrypt$ln=14,r=8,p=1$c2FsdA$aGFzaA\n",
    "tls.crt": "-----BEGIN CERTIFICATE-----\n",
    "tls.key": "-----BEGIN PRIVATE KEY-----\n",
}
_base: Path | None = None


def one_input(data: bytes) -> None:
    """Load `data` as a configuration, from text and from a file."""
    base = _base_dir()
    with contextlib.suppress(ConfigError):
        parse_config(data.decode("utf-8", "replace"), base_dir=base, env=ENV)
    path = base / "config.yaml"
    path.write_bytes(data)
    with contextlib.suppress(ConfigError):
        load_config(path, env=ENV)


def _base_dir() -> Path:
    global _base  # noqa: PLW0603 - one scratch folder per process
    if _base is None:
        _base = Path(tempfile.mkdtemp(prefix="fuzz-config-"))
        atexit.register(shutil.rmtree, _base, True)
        for name, text in _FILES.items():
            (_base / name).write_text(text)
    return _base


# --- seeds ----------------------------------------------------------------------------------

_MINIMAL = """\
smtp:
  listeners:
    - {name: lan, address: 0.0.0.0, port: 2525}
tenants:
  - name: contoso
    tenant_id: 11111111-1111-1111-1111-111111111111
    client_id: 22222222-2222-2222-2222-222222222222
    client_secret: ${CONTOSO_SECRET}
    domains: [contoso.com, "*.contoso.com"]
spool: {directory: spool}
"""

_HAND_WRITTEN = {
    "minimal": _MINIMAL,
    "secret-file-tls-users": """\
smtp:
  listeners:
    - {name: lan, address: 0.0.0.0, port: 2525, tls: starttls, auth: optional,
       proxy_protocol_from: [10.0.0.0/8]}
  tls: {cert_file: tls.crt, key_file: ~/tls.key, min_version: tlsv1.2}
  max_message_size: 35MiB
  command_timeout: 5m
users:
  - {username: erp, password_hash_file: erp.hash, senders: ['*@contoso.com']}
tenants:
  - {name: contoso, tenant_id: 11111111-1111-1111-1111-111111111111,
     client_id: 22222222-2222-2222-2222-222222222222, client_secret_file: contoso-secret,
     domains: [contoso.com]}
spool: {directory: spool}
""",
    "clients-routing-delivery": _MINIMAL
    + (
        "clients:\n  - {name: printers, networks: [192.168.10.0/24, 'fd00:10::/64'],"
        " senders: [scanner@contoso.com], send_as: scans@contoso.com}\n"
        "delivery: {concurrency: 8, retry_initial: 1m, retry_max: 1h, max_queue_lifetime: 5d,"
        " max_bytes_in_flight: 100MB, postmaster: postmaster@contoso.com}\n"
        "http: {listen: '127.0.0.1:8025'}\nlogging: {level: info, format: json}\n"
        "shutdown: {drain_timeout: 30s}\nproxy: http://proxy.contoso.com:3128\n"
    ),
    "delegated-tenant": _MINIMAL.replace(
        "    client_secret: ${CONTOSO_SECRET}\n",
        "    auth: delegated\n    account: relay@contoso.com\n    transport: smtp_oauth\n"
        "    cloud: usgov\n    client_secret_expires: 2027-06-30\n    large_messages: true\n",
    ),
    "every-error": (
        "smtp: [1, 2]\ntenants: {}\nspool: {directory: 5, min_free_space: -1}\nx: &a [*a]\n"
    ),
    "anchors-and-tags": "a: &x {b: [1, 2]}\nc: *x\nd: !!binary aGk=\ne: 2001-01-01\nf: .inf\n",
    "not-a-mapping": "- just\n- a list\n",
    "empty": "",
}


def seeds(messages: Mapping[str, bytes]) -> dict[str, bytes]:
    """The example configuration and hand-written ones, valid and broken."""
    example = Path(__file__).resolve().parents[2] / "config" / "example.yaml"
    found = {"example": example.read_bytes()} if example.is_file() else {}
    return {**found, **{name: text.encode() for name, text in _HAND_WRITTEN.items()}}
