"""Config validation: every error at once, each with its YAML path and a hint; secrets hidden."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from gateway.addresses import parse_mailbox
from gateway.config import Cloud, SubmissionMode, TlsMode, load_config, parse_config
from gateway.errors import ConfigError
from gateway.queue.model import Envelope
from gateway.routing import Router, advertised_size, router_for

MINIMAL = """
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


def parse(text: str, tmp_path: Path, env: dict[str, str] | None = None):
    return parse_config(
        text, base_dir=tmp_path, env={"CONTOSO_SECRET": "s3cr3t-value", **(env or {})}
    )


def errors_of(text: str, tmp_path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, base_dir=tmp_path, env=env or {})
    return [str(issue) for issue in caught.value.issues]


def test_minimal_config_gets_safe_defaults(tmp_path: Path) -> None:
    config = parse(MINIMAL, tmp_path)
    assert config.spool.directory == tmp_path / "spool"
    assert config.smtp.max_message_size == 35 * 1024 * 1024
    assert config.smtp.max_recipients == 500
    assert config.delivery.max_bytes_in_flight == 100_000_000
    assert config.smtp.listeners[0].tls is TlsMode.NONE
    # No clients section: only loopback may connect.
    assert [str(n) for n in config.clients[0].networks] == ["127.0.0.0/8", "::1/128"]
    tenant = config.tenants[0]
    assert tenant.cloud is Cloud.GLOBAL
    assert (
        tenant.authority == "https://login.microsoftonline.com/11111111-1111-1111-1111-111111111111"
    )
    assert tenant.scope == "https://graph.microsoft.com/.default"
    assert tenant.client_secret.reveal() == "s3cr3t-value"


def test_secret_never_appears_in_repr(tmp_path: Path) -> None:
    config = parse(MINIMAL, tmp_path)
    assert "s3cr3t-value" not in repr(config)
    assert "s3cr3t-value" not in str(config.tenants[0].client_secret)


def test_every_error_is_reported_with_its_path(tmp_path: Path) -> None:
    text = """
smtp:
  listners: []
  max_message_size: 12XB
clients:
  - {name: printers, networks: [192.168.10.0/33], senders: [scanner@contoso.com]}
tenants:
  - name: contoso
    tenant_id: t
    client_secret: ${MISSING_SECRET}
    domains: [contoso.com, "bad domain"]
    cloud: mars
spool: {}
delivery: {concurrency: 0, request_timeout: soon, max_bytes_in_flight: 500k}
"""
    errors = errors_of(text, tmp_path)
    expected_prefixes = [
        "smtp.listners: unknown key — did you mean 'listeners'?",
        "smtp.listeners: at least one listener is required",
        "smtp.max_message_size: unknown size unit 'XB'",
        "clients[0].networks[0]: not an IP network: '192.168.10.0/33'",
        "tenants[0].client_id: is required",
        "tenants[0].client_secret: environment variable MISSING_SECRET is not set",
        "tenants[0].domains[1]: not a domain: 'bad domain'",
        "tenants[0].cloud: unknown value 'mars' — use one of global, usgov, usgov-dod, china",
        "spool.directory: is required",
        "delivery.concurrency: must be between 1 and 256, got 0",
        "delivery.request_timeout: not a duration: 'soon'",
        "delivery.max_bytes_in_flight: must be at least 1048576 bytes, got 500000",
    ]
    for prefix in expected_prefixes:
        assert any(error.startswith(prefix) for error in errors), (prefix, errors)


def test_secret_from_file_relative_to_credentials_directory(tmp_path: Path) -> None:
    credentials = tmp_path / "creds"
    credentials.mkdir()
    (credentials / "contoso").write_text("from-systemd\n")
    text = MINIMAL.replace("client_secret: ${CONTOSO_SECRET}", "client_secret_file: contoso")
    config = parse_config(text, base_dir=tmp_path, env={"CREDENTIALS_DIRECTORY": str(credentials)})
    assert config.tenants[0].client_secret.reveal() == "from-systemd"


def test_secret_file_missing_names_both_places(tmp_path: Path) -> None:
    text = MINIMAL.replace("client_secret: ${CONTOSO_SECRET}", "client_secret_file: contoso")
    errors = errors_of(text, tmp_path, env={"CREDENTIALS_DIRECTORY": "/run/credentials/x"})
    assert len(errors) == 1
    assert errors[0].startswith(
        "tenants[0].client_secret_file: file not found: /run/credentials/x/contoso or "
    )


def test_secret_value_is_not_quoted_in_errors(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "client_secret: ${CONTOSO_SECRET}",
        "client_secret: hunter2-secret\n    client_secret_file: x",
    )
    errors = errors_of(text, tmp_path, env={"CONTOSO_SECRET": "x"})
    assert errors == [
        "tenants[0].client_secret: both client_secret and client_secret_file are set — keep only one"
    ]
    assert "hunter2" not in "".join(errors)


def test_tls_listener_without_certificate_is_an_error(tmp_path: Path) -> None:
    text = MINIMAL.replace("port: 2525}", "port: 2525, tls: starttls}")
    errors = errors_of(text, tmp_path, env={"CONTOSO_SECRET": "x"})
    assert errors == [
        "smtp.listeners[0].tls: tls: starttls needs a certificate — set smtp.tls.cert_file and "
        "key_file, or cert_file/key_file on the listener"
    ]


def test_domain_served_by_two_tenants_is_an_error(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + """
  - name: fabrikam
    tenant_id: t2
    client_id: c2
    client_secret: x
    domains: [contoso.com]
""".replace("spool: {directory: spool}\n", "")
    )
    text = text.replace("spool: {directory: spool}\n", "") + "spool: {directory: spool}\n"
    errors = errors_of(text, tmp_path, env={"CONTOSO_SECRET": "x"})
    assert any("domain 'contoso.com' is also listed by tenant 'contoso'" in e for e in errors), (
        errors
    )


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    errors = errors_of("smtp: {listeners: [\n", tmp_path)
    assert errors[0].startswith("line ")


@pytest.mark.parametrize(
    ("cloud", "login", "scope"),
    [
        ("usgov", "https://login.microsoftonline.us", "https://graph.microsoft.us/.default"),
        (
            "usgov-dod",
            "https://login.microsoftonline.us",
            "https://dod-graph.microsoft.us/.default",
        ),
        (
            "china",
            "https://login.chinacloudapi.cn",
            "https://microsoftgraph.chinacloudapi.cn/.default",
        ),
    ],
)
def test_national_clouds_set_endpoints_and_scope(
    tmp_path: Path, cloud: str, login: str, scope: str
) -> None:
    config = parse(MINIMAL.replace("domains:", f"cloud: {cloud}\n    domains:"), tmp_path)
    assert config.tenants[0].login_endpoint == login
    assert config.tenants[0].scope == scope


def test_user_password_must_be_a_hash(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + "users:\n  - {username: erp, password_hash: plaintext, senders: ['*@contoso.com']}\n"
    )
    errors = errors_of(text, tmp_path, env={"CONTOSO_SECRET": "x"})
    assert errors == [
        "users[0].password_hash: is not a password hash — create one with: smtp-graph-gateway hash-password"
    ]


def test_submission_modes_and_large_messages(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        '    domains: [contoso.com, "*.contoso.com"]\n',
        '    domains: [contoso.com, "*.contoso.com"]\n'
        "    mode: JSON\n    large_messages: true\n    max_message_size: 100MiB\n",
    ) + (
        "routing:\n  addresses:\n"
        "    printer@contoso.com: {mode: mime}\n"
        "    erp@contoso.com: contoso\n"
    )
    config = parse(text, tmp_path)
    [tenant] = config.tenants
    assert (tenant.mode, tenant.large_messages) == (SubmissionMode.JSON, True)
    assert tenant.max_message_size == 100 * 1024 * 1024
    router = Router(config.tenants, config.routing)
    printer = router.route(parse_mailbox("printer@contoso.com"))
    erp = router.route(parse_mailbox("erp@contoso.com"))
    assert printer is not None and erp is not None
    assert printer.mode is SubmissionMode.MIME and printer.size_limit == 3_080_192
    assert erp.mode is SubmissionMode.JSON and erp.size_limit == 100 * 1024 * 1024
    assert advertised_size(config.smtp, config.tenants, config.routing) == 35 * 1024 * 1024


def test_bad_modes_and_sizes_name_their_paths(tmp_path: Path) -> None:
    text = (
        MINIMAL.replace(
            '    domains: [contoso.com, "*.contoso.com"]\n',
            '    domains: [contoso.com, "*.contoso.com"]\n'
            "    mode: eml\n    max_message_size: 200MiB\n",
        )
        + "routing:\n  addresses:\n    printer@contoso.com: {mode: fast}\n    x@contoso.com: {}\n"
    )
    errors = "\n".join(errors_of(text, tmp_path, {"CONTOSO_SECRET": "x"}))
    assert "tenants[0].mode" in errors
    assert "tenants[0].max_message_size" in errors and "150 MiB" in errors
    assert "routing.addresses.printer@contoso.com.mode" in errors
    assert "routing.addresses.x@contoso.com" in errors and "nothing to override" in errors


def test_an_empty_tenant_list_is_refused(tmp_path: Path) -> None:
    """`tenants: []` passed, and reloaded under load turned every MAIL into a 550."""
    text = MINIMAL.split("tenants:", maxsplit=1)[0] + "tenants: []\nspool: {directory: spool}\n"
    assert errors_of(text, tmp_path) == [
        "tenants: at least one tenant is required — see config/example.yaml"
    ]


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_bytes(MINIMAL.encode() + b"# caf\xe9\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={"CONTOSO_SECRET": "s3cr3t-value"})
    [issue] = caught.value.issues
    assert str(issue) == f"{path}: line 12: not UTF-8 (byte 0xe9) — save the file as UTF-8"


SENT_ITEMS = MINIMAL.replace(
    '    domains: [contoso.com, "*.contoso.com"]\n',
    '    domains: [contoso.com, "*.contoso.com"]\n    save_to_sent_items: false\n',
) + (
    "clients:\n"
    "  - {name: mfps, networks: [192.168.10.0/24], senders: ['*@contoso.com']}\n"
    "  - {name: erp, networks: [10.0.0.5], senders: ['*@contoso.com'], save_to_sent_items: true}\n"
    "users:\n"
    "  - username: app\n"
    "    password_hash: $scrypt$ln=1,r=8,p=1$c2FsdA$aGFzaA\n"
    "    senders: ['*@contoso.com']\n"
    "    save_to_sent_items: true\n"
    "routing:\n  addresses:\n"
    "    audit@contoso.com: {save_to_sent_items: true}\n"
    "    quiet@contoso.com: {tenant: contoso, save_to_sent_items: false}\n"
)


def test_save_to_sent_items_per_tenant_client_user_and_sender(tmp_path: Path) -> None:
    """A sender's override wins over the client's or user's setting, which wins over the
    tenant's; the default is to keep a copy (Graph's default)."""
    config = parse(SENT_ITEMS, tmp_path)
    router = router_for(config)

    def saves(sender: str, client: str = "mfps", user: str = "") -> bool:
        envelope = Envelope("0190ABCDEF012A1B2C3", sender, ("a@x.com",), 0.0, client, "", "", 1)
        [route] = router.routes_for(replace(envelope, user=user))
        return route.save_to_sent_items

    assert config.tenants[0].save_to_sent_items is False
    assert saves("scanner@contoso.com") is False  # the tenant's
    assert saves("scanner@contoso.com", client="erp") is True  # the client's
    assert saves("scanner@contoso.com", user="app") is True  # the user's
    assert saves("audit@contoso.com") is True  # the sender's, over the tenant's
    assert saves("quiet@contoso.com", client="erp") is False  # the sender's, over the client's
    assert parse(MINIMAL, tmp_path).tenants[0].save_to_sent_items is True


def test_save_to_sent_items_false_where_it_cannot_be_honoured_is_an_error(
    tmp_path: Path,
) -> None:
    text = (
        MINIMAL.replace(
            '    domains: [contoso.com, "*.contoso.com"]\n',
            '    domains: [contoso.com, "*.contoso.com"]\n'
            "    mode: mime\n    save_to_sent_items: false\n",
        )
        + "  - name: fabrikam\n"
        "    tenant_id: 33333333-3333-3333-3333-333333333333\n"
        "    client_id: 44444444-4444-4444-4444-444444444444\n"
        "    client_secret: x\n"
        "    domains: [fabrikam.com]\n"
        "    transport: smtp-oauth\n"
        "    save_to_sent_items: false\n"
        "routing:\n  addresses:\n"
        "    printer@fabrikam.com: {mode: mime, save_to_sent_items: false}\n"
        "    odd@contoso.com: {save_to_sent_items: maybe}\n"
    )
    text = text.replace("spool: {directory: spool}\n", "") + "spool: {directory: spool}\n"
    errors = errors_of(text, tmp_path, {"CONTOSO_SECRET": "x"})
    mime = [e for e in errors if e.startswith("tenants[0].save_to_sent_items")]
    assert len(mime) == 1 and "mode: mime cannot skip Sent Items" in mime[0]
    assert "use mode: auto" in mime[0]
    smtp = [e for e in errors if e.startswith("tenants[1].save_to_sent_items")]
    assert len(smtp) == 1 and "smtp-oauth cannot skip Sent Items" in smtp[0]
    sender = [e for e in errors if e.startswith("routing.addresses.printer@fabrikam.com")]
    assert sender and "mode: mime cannot skip Sent Items" in sender[0]
    assert any(e.startswith("routing.addresses.odd@contoso.com.save_to_sent_items") for e in errors)


def test_the_hve_endpoint_preset(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        '    domains: [contoso.com, "*.contoso.com"]\n',
        '    domains: [contoso.com, "*.contoso.com"]\n'
        "    transport: smtp-oauth\n    smtp_endpoint: hve\n",
    )
    [tenant] = parse(text, tmp_path).tenants
    assert (tenant.smtp_endpoint, tenant.hve) == (("smtp-hve.office365.com", 587), True)
    explicit = text.replace("smtp_endpoint: hve", "smtp_endpoint: smtp-hve.office365.com:587")
    assert parse(explicit, tmp_path).tenants[0].hve is True
    assert parse(MINIMAL, tmp_path).tenants[0].hve is False


def test_hve_needs_the_smtp_oauth_transport(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        '    domains: [contoso.com, "*.contoso.com"]\n',
        '    domains: [contoso.com, "*.contoso.com"]\n    hve: true\n',
    )
    [error] = errors_of(text, tmp_path, {"CONTOSO_SECRET": "x"})
    assert error.startswith("tenants[0].hve: High Volume Email is an SMTP endpoint")
