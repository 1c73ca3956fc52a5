"""Configuration traps an administrator falls into in the first hour (issue #19): YAML's
booleans, networks with host bits set, warnings for values that load but are probably wrong,
and key material found through systemd's `$CREDENTIALS_DIRECTORY`."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme
import yaml

from gateway.config import parse_config
from gateway.errors import ConfigError

GUID_T = "11111111-1111-1111-1111-111111111111"
GUID_C = "22222222-2222-2222-2222-222222222222"


def document(**changes: object) -> dict:
    """A valid config as a YAML tree; `changes` replace top-level sections."""
    base: dict = {
        "smtp": {"listeners": [{"name": "lan", "address": "127.0.0.1", "port": 2525}]},
        "tenants": [
            {
                "name": "contoso",
                "tenant_id": GUID_T,
                "client_id": GUID_C,
                "client_secret": "s3cr3t-value",
                "domains": ["contoso.com"],
            }
        ],
        "spool": {"directory": "spool"},
    }
    base.update(changes)
    return base


def load(text: str, tmp_path: Path, env: dict[str, str] | None = None):
    return parse_config(text, base_dir=tmp_path, env=env or {})


def errors(text: str, tmp_path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(text, tmp_path, env)
    return [str(issue) for issue in caught.value.issues]


# -- 1. YAML reads unquoted off/on/yes/no as booleans -------------------------------------------

AUTH_OFF = """
smtp:
  listeners:
    - name: lan
      address: 127.0.0.1
      port: 2525
      auth: off
tenants:
  - name: contoso
    tenant_id: 11111111-1111-1111-1111-111111111111
    client_id: 22222222-2222-2222-2222-222222222222
    client_secret: s3cr3t-value
    domains: [contoso.com]
spool: {directory: spool}
"""


def test_the_documented_auth_off_is_accepted_unquoted(tmp_path: Path) -> None:
    config = load(AUTH_OFF, tmp_path)
    assert config.smtp.listeners[0].auth == "off"
    assert load(AUTH_OFF.replace("auth: off", 'auth: "off"'), tmp_path).smtp.listeners[0].auth == (
        "off"
    )
    for word in ("OFF", "Off", "no", "false"):  # YAML's other spellings of false
        text = AUTH_OFF.replace("auth: off", f"auth: {word}")
        assert load(text, tmp_path).smtp.listeners[0].auth == "off", word


def test_auth_on_is_refused_with_a_hint_to_quote(tmp_path: Path) -> None:
    [error] = errors(AUTH_OFF.replace("auth: off", "auth: on"), tmp_path)
    assert error.startswith("smtp.listeners[0].auth: unknown value true")
    assert "optional, required" in error and "quotes" in error


ENUM_KEYS = [  # every key that takes one of a fixed set of words: (where in the tree, key)
    (("smtp", "tls"), "min_version"),
    (("smtp", "listeners", 0), "tls"),
    (("smtp", "listeners", 0), "min_version"),
    (("smtp", "listeners", 0), "auth"),
    (("smtp",), "refuse_unknown_at"),
    (("tenants", 0), "auth"),
    (("tenants", 0), "cloud"),
    (("tenants", 0), "mode"),
    (("tenants", 0), "transport"),
    (("routing", "addresses", "a@contoso.com"), "mode"),
    (("logging",), "level"),
    (("logging",), "format"),
]


@pytest.mark.parametrize(("where", "key"), ENUM_KEYS)
@pytest.mark.parametrize("word", ["on", "off", "yes", "no"])
def test_every_enum_key_says_quote_it_for_a_yaml_boolean(
    tmp_path: Path, where: tuple, key: str, word: str
) -> None:
    tree = document(
        smtp={
            "tls": {"cert_file": "c.pem", "key_file": "k.pem"},
            "listeners": [{"name": "lan", "address": "127.0.0.1", "port": 2525}],
        },
        routing={"addresses": {"a@contoso.com": {"tenant": "contoso"}}},
        logging={},
    )
    node = tree
    for step in where:
        node = node[step]
    node[key] = "PLACEHOLDER"
    (tmp_path / "c.pem").write_text("x")
    (tmp_path / "k.pem").write_text("x")
    text = yaml.safe_dump(tree).replace("PLACEHOLDER", word)  # unquoted, as a person writes it
    try:
        load(text, tmp_path)
    except ConfigError as error:
        found = [str(issue) for issue in error.issues if issue.path.endswith("." + key)]
        assert found, error
        assert "quote" in found[0] and "YAML reads unquoted" in found[0], found[0]
        assert "expected a string, got true/false" not in found[0]
    else:  # only the documented word itself may load
        assert (key, word) == ("auth", "off") or (key, word) == ("auth", "no"), (key, word)


def test_a_string_key_given_a_yaml_boolean_says_quote_it(tmp_path: Path) -> None:
    tree = document()
    tree["smtp"]["hostname"] = "PLACEHOLDER"
    [error] = errors(yaml.safe_dump(tree).replace("PLACEHOLDER", "yes"), tmp_path)
    assert error.startswith("smtp.hostname: expected a string, got true")
    assert "quote the value" in error


# -- 3. host bits ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "one", "whole"),
    [
        ("10.1.2.3/8", "10.1.2.3/32", "10.0.0.0/8"),
        ("192.168.10.7/24", "192.168.10.7/32", "192.168.10.0/24"),
        ("fd00::1/64", "fd00::1/128", "fd00::/64"),
    ],
)
def test_a_network_with_host_bits_is_refused_with_both_readings(
    tmp_path: Path, written: str, one: str, whole: str
) -> None:
    tree = document(clients=[{"name": "printers", "networks": [written], "senders": ["*"]}])
    [error, *_also_no_network_left] = errors(yaml.safe_dump(tree), tmp_path)
    assert error.startswith("clients[0].networks[0]:")
    assert f"has host bits set: it would mean all of {whole}" in error
    assert f"write {one} for the one address, or {whole} for the whole network" in error


def test_host_bits_in_proxy_networks_are_refused_too(tmp_path: Path) -> None:
    tree = document()
    tree["smtp"]["listeners"][0]["proxy_protocol_from"] = ["10.0.0.5/16"]
    [error, *_] = errors(yaml.safe_dump(tree), tmp_path)
    assert "smtp.listeners[0].proxy_protocol_from[0]" in error and "10.0.0.5/32" in error


def test_exact_networks_and_single_addresses_still_load(tmp_path: Path) -> None:
    networks = ["10.0.0.0/8", "192.168.10.7", "fd00::/64", "fd00::1"]
    tree = document(clients=[{"name": "p", "networks": networks, "senders": ["*"]}])
    config = load(yaml.safe_dump(tree), tmp_path)
    assert [str(n) for n in config.clients[0].networks] == [
        "10.0.0.0/8",
        "192.168.10.7/32",
        "fd00::/64",
        "fd00::1/128",
    ]


# -- 8. warnings: loads, but probably wrong -----------------------------------------------------


def warnings_of(tree: dict, tmp_path: Path) -> list[str]:
    return [str(warning) for warning in load(yaml.safe_dump(tree), tmp_path).warnings]


def test_a_correct_config_has_no_warnings(tmp_path: Path) -> None:
    tree = document(clients=[{"name": "p", "networks": ["10.0.0.0/8"], "senders": ["*"]}])
    assert warnings_of(tree, tmp_path) == []


def test_a_secret_id_pasted_as_the_secret_is_warned_about_without_quoting_it(
    tmp_path: Path,
) -> None:
    tree = document()
    secret_id = "9f3c1a52-7d4e-4b8a-a1c2-3e5f6a7b8c9d"
    tree["tenants"][0]["client_secret"] = secret_id
    [warning] = warnings_of(tree, tmp_path)
    assert warning.startswith("tenants[0].client_secret: looks like a Secret ID (a GUID)")
    assert "Value" in warning and secret_id not in warning


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("client_id", "contoso-app", "tenants[0].client_id: 'contoso-app' is not a GUID"),
        ("tenant_id", "contoso", "tenants[0].tenant_id: 'contoso' is not a GUID or a domain"),
        ("tenant_id", "organizations", "tenants[0].tenant_id: 'organizations' is not a GUID"),
    ],
)
def test_ids_that_are_not_guids_are_warned_about(
    tmp_path: Path, key: str, value: str, expected: str
) -> None:
    tree = document()
    tree["tenants"][0][key] = value
    [warning] = warnings_of(tree, tmp_path)
    assert warning.startswith(expected) and "Overview" in warning


def test_a_domain_name_or_a_delegated_keyword_is_a_fine_tenant_id(tmp_path: Path) -> None:
    tree = document()
    tree["tenants"][0]["tenant_id"] = "contoso.onmicrosoft.com"
    assert warnings_of(tree, tmp_path) == []
    tree["tenants"][0] = {
        "name": "personal",
        "auth": "delegated",
        "tenant_id": "consumers",
        "client_id": GUID_C,
        "account": "me@outlook.com",
        "domains": ["outlook.com"],
    }
    assert warnings_of(tree, tmp_path) == []


def test_a_sender_domain_no_tenant_serves_is_warned_about(tmp_path: Path) -> None:
    tree = document(
        clients=[
            {
                "name": "printers",
                "networks": ["10.0.0.0/8"],
                "senders": ["scanner@contoso.com", "scanner@fabrikam.com", "*"],
            }
        ],
        users=[
            {
                "username": "erp",
                "password_hash": "$scrypt$x",
                "senders": ["*@sub.contoso.com", "*@fabrikam.com"],
            }
        ],
    )
    assert warnings_of(tree, tmp_path) == [
        "clients[0].senders[1]: no tenant serves 'fabrikam.com': mail from "
        "scanner@fabrikam.com would be refused at MAIL FROM (550 5.7.1) — add the domain to "
        "a tenant's domains, or set routing.default_tenant",
        "users[0].senders[0]: no tenant serves 'sub.contoso.com': mail from "
        "*@sub.contoso.com would be refused at MAIL FROM (550 5.7.1) — add the domain to "
        "a tenant's domains, or set routing.default_tenant",
        "users[0].senders[1]: no tenant serves 'fabrikam.com': mail from *@fabrikam.com "
        "would be refused at MAIL FROM (550 5.7.1) — add the domain to a tenant's domains, or "
        "set routing.default_tenant",
    ]
    tree["tenants"][0]["domains"] = ["contoso.com", "*.contoso.com"]
    tree["routing"] = {"default_tenant": "contoso"}
    assert warnings_of(tree, tmp_path) == []


# -- 10. key material from systemd's LoadCredential= -------------------------------------------


def test_certificate_files_are_found_in_the_credentials_directory(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    ca = trustme.CA()
    issued = ca.issue_cert("app.contoso.com")
    issued.cert_chain_pems[0].write_to_path(str(credentials / "app.pem"))
    issued.private_key_pem.write_to_path(str(credentials / "app.key"))
    (credentials / "key-password").write_text("unused\n")
    tree = document()
    del tree["tenants"][0]["client_secret"]
    tree["tenants"][0]["certificate"] = {
        "cert_file": "app.pem",
        "key_file": "app.key",
        "key_password_file": "key-password",
    }
    text = yaml.safe_dump(tree)
    config = load(text, tmp_path, env={"CREDENTIALS_DIRECTORY": str(credentials)})
    certificate = config.tenants[0].certificate
    assert certificate is not None
    assert certificate.cert_file == credentials / "app.pem"
    assert certificate.key_file == credentials / "app.key"
    missing = errors(text, tmp_path, env={"CREDENTIALS_DIRECTORY": str(tmp_path / "elsewhere")})
    assert any(
        error.startswith("tenants[0].certificate.key_file: file not found: ")
        and str(tmp_path / "elsewhere" / "app.key") in error
        and "LoadCredential=" in error
        for error in missing
    ), missing


def test_a_pfx_is_found_in_the_credentials_directory(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "app.pfx").write_bytes(b"not checked at load")
    tree = document()
    del tree["tenants"][0]["client_secret"]
    tree["tenants"][0]["certificate"] = {"pfx_file": "app.pfx"}
    config = load(yaml.safe_dump(tree), tmp_path, env={"CREDENTIALS_DIRECTORY": str(credentials)})
    assert config.tenants[0].certificate.pfx_file == credentials / "app.pfx"


def test_a_listener_min_version_alone_applies_to_the_shared_certificate(tmp_path: Path) -> None:
    """It was read only beside a listener's own cert_file, and silently ignored otherwise."""
    (tmp_path / "c.pem").write_text("x")
    (tmp_path / "k.pem").write_text("x")
    tree = document()
    tree["smtp"]["tls"] = {"cert_file": "c.pem", "key_file": "k.pem"}
    tree["smtp"]["listeners"][0].update(tls="starttls", min_version="tlsv1.3")
    listener = load(yaml.safe_dump(tree), tmp_path).smtp.listeners[0]
    assert listener.tls_files is not None and listener.tls_files.min_version == "tlsv1.3"


def test_a_tenant_named_like_a_yaml_boolean_says_quote_it(tmp_path: Path) -> None:
    tree = document(routing={"addresses": {"a@contoso.com": "PLACEHOLDER"}})
    [error] = errors(yaml.safe_dump(tree).replace("PLACEHOLDER", "no"), tmp_path)
    assert error.startswith("routing.addresses.a@contoso.com: expected a tenant name")
    assert "quote it" in error
