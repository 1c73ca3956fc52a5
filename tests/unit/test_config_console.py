"""The `console` section: off by default, loopback unless told, TLS from the listeners'
certificate or its own, users with scrypt hashes and roles, API tokens; every mistake named
by its YAML path."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from gateway.config import parse_config
from gateway.errors import ConfigError
from gateway.passwords import hash_password
from tests.unit.test_config import MINIMAL

HASH = hash_password("a console password")
TOKEN = "t" * 40


def parse(text: str, tmp_path: Path):
    return parse_config(
        text, base_dir=tmp_path, env={"CONTOSO_SECRET": "s3cr3t-value", "API_TOKEN": TOKEN}
    )


def errors_of(text: str, tmp_path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(text, tmp_path)
    return [str(issue) for issue in caught.value.issues]


def with_console(body: str) -> str:
    return MINIMAL + "console:\n" + "".join(f"  {line}\n" for line in body.strip().splitlines())


def test_the_console_is_off_unless_listen_is_given(tmp_path: Path) -> None:
    assert parse(MINIMAL, tmp_path).console is None
    assert parse(MINIMAL + "console: {}\n", tmp_path).console is None


def test_a_console_with_users_tokens_and_defaults(tmp_path: Path) -> None:
    config = parse(
        with_console(
            f"""
listen: 127.0.0.1:8026
users:
  - {{username: olga, password_hash: "{HASH}", role: operator}}
  - {{username: vera, password_hash: "{HASH}"}}
api_tokens:
  - {{name: nagios, token: "${{API_TOKEN}}"}}
"""
        ),
        tmp_path,
    )
    console = config.console
    assert console is not None
    assert (console.address, console.port, console.tls) == ("127.0.0.1", 8026, None)
    assert [(u.username, u.role) for u in console.users] == [
        ("olga", "operator"),
        ("vera", "viewer"),  # read-only unless said otherwise
    ]
    assert console.api_tokens[0].token.reveal() == TOKEN
    assert console.session_idle_timeout == 1800.0
    assert (console.lockout_failures, console.lockout_duration) == (5, 300.0)
    assert TOKEN not in repr(config) and HASH not in repr(config)
    assert not config.warnings


def test_mistakes_are_named_by_their_path(tmp_path: Path) -> None:
    errors = errors_of(
        with_console(
            """
listen: localhost:80800
users:
  - {username: olga, password_hash: plain-text-password, role: admin}
  - {password_hash: "$scrypt$n=16384,r=8,p=1$c2FsdA==$aGFzaA=="}
api_tokens:
  - {name: short, token: abc}
session_idle_timeout: 5s
"""
        ),
        tmp_path,
    )
    text = "\n".join(errors)
    assert "console.listen: not an address:port: 'localhost:80800'" in text
    assert "console.users[0].role: unknown value 'admin'" in text
    assert "console.users[0].password_hash: is not a password hash" in text
    assert "hash-password" in text
    assert "console.users[1].username: is required" in text
    assert "console.api_tokens[0].token: shorter than 32 characters" in text
    assert "console.session_idle_timeout: must be at least 60s" in text


def test_nobody_to_sign_in_is_an_error(tmp_path: Path) -> None:
    errors = errors_of(with_console("listen: 127.0.0.1:8026"), tmp_path)
    assert any(e.startswith("console.users: the console is enabled but nobody") for e in errors)


def test_tls_true_needs_the_listeners_certificate(tmp_path: Path) -> None:
    errors = errors_of(
        with_console(
            f"""
listen: 127.0.0.1:8026
tls: true
users: [{{username: olga, password_hash: "{HASH}"}}]
"""
        ),
        tmp_path,
    )
    assert any(e.startswith("console.tls: true means the listeners' certificate") for e in errors)


def test_tls_from_the_listeners_or_its_own_files(tmp_path: Path) -> None:
    authority = trustme.CA()
    issued = authority.issue_cert("gateway.test")
    issued.cert_chain_pems[0].write_to_path(str(tmp_path / "tls.crt"))
    issued.private_key_pem.write_to_path(str(tmp_path / "tls.key"))
    base = MINIMAL.replace("smtp:\n", "smtp:\n  tls: {cert_file: tls.crt, key_file: tls.key}\n", 1)
    users = f'users: [{{username: olga, password_hash: "{HASH}"}}]'
    shared = parse(base + f"console:\n  listen: 10.0.0.5:8443\n  tls: true\n  {users}\n", tmp_path)
    assert shared.console is not None and shared.console.tls is not None
    assert shared.console.tls.cert_file == tmp_path / "tls.crt"
    assert not shared.warnings  # TLS on a LAN address is what we want
    own = parse(
        with_console(
            f"""
listen: "[::1]:8443"
tls: {{cert_file: tls.crt, key_file: missing.key}}
{users}
"""
        ).replace("missing.key", "tls.key"),
        tmp_path,
    )
    assert own.console is not None and own.console.address == "::1"
    assert own.console.tls is not None and own.console.tls.key_file == tmp_path / "tls.key"
    errors = errors_of(
        with_console(
            f"listen: 127.0.0.1:1\ntls: {{cert_file: nope.crt, key_file: tls.key}}\n{users}"
        ),
        tmp_path,
    )
    assert any(e.startswith("console.tls.cert_file: file not found") for e in errors)


def test_a_lan_address_without_tls_is_a_warning(tmp_path: Path) -> None:
    config = parse(
        with_console(f'listen: 0.0.0.0:8026\nusers: [{{username: olga, password_hash: "{HASH}"}}]'),
        tmp_path,
    )
    [warning] = config.warnings
    assert warning.path == "console.listen" and "without TLS" in warning.message


def test_sign_in_with_microsoft_through_a_configured_tenant(tmp_path: Path) -> None:
    config = parse(
        with_console(
            """
listen: 127.0.0.1:8026
microsoft:
  tenant: contoso
  operators: [Console.Operator]
  viewers: [5b1d4f43-2bde-4c5a-9d2e-3f7c1b0a9e11]
"""
        ),
        tmp_path,
    )
    assert config.console is not None and config.console.microsoft is not None
    microsoft = config.console.microsoft
    assert (microsoft.tenant, microsoft.operators) == ("contoso", ("Console.Operator",))
    assert microsoft.redirect_uri == ""  # the console's own URL


def test_sign_in_with_microsoft_mistakes(tmp_path: Path) -> None:
    errors = errors_of(
        with_console(
            """
listen: 127.0.0.1:8026
microsoft: {tenant: fabrikam, redirect_uri: "http://relay.contoso.com/cb"}
"""
        ),
        tmp_path,
    )
    text = "\n".join(errors)
    assert "console.microsoft.tenant: no tenant named 'fabrikam'" in text
    assert "console.microsoft: nobody would be let in" in text
    assert "console.microsoft.redirect_uri: not an https URL" in text
