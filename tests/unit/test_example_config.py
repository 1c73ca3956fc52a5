"""config/example.yaml documents real keys: it validates once the files it names exist."""

from __future__ import annotations

import re
from pathlib import Path

import trustme

from gateway.config import load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "example.yaml"


def test_example_config_is_valid(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("relay.contoso.com")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "tls.crt"))
    cert.private_key_pem.write_to_path(str(tmp_path / "tls.key"))
    (tmp_path / "contoso-secret").write_text("secret-value\n")
    (tmp_path / "erp.hash").write_text("$scrypt$n=16384,r=8,p=1$AAAA$BBBB\n")
    text = EXAMPLE.read_text().replace("/etc/smtp-graph-gateway/", f"{tmp_path}/")
    config_file = tmp_path / "config.yaml"
    config_file.write_text(text)
    config = load_config(config_file, env={})
    assert [listener.name for listener in config.smtp.listeners] == ["lan", "submissions"]
    assert config.tenants[0].client_secret.reveal() == "secret-value"
    assert [client.name for client in config.clients] == ["printers", "erp"]
    assert config.http is not None and config.http.port == 8025
    assert config.warnings == ()  # the example is what a correct configuration looks like


def test_example_and_quick_start_say_that_large_messages_need_large_messages() -> None:
    """`max_message_size: 35MiB` in the example read as a promise; without a tenant with
    `large_messages: true` nothing over 3,080,192 bytes is accepted (issue #19)."""
    example = EXAMPLE.read_text()
    size_comment = example[: example.index("max_message_size: 35MiB")]
    assert "3,080,192 bytes" in size_comment[-400:]
    readme = (EXAMPLE.parents[1] / "README.md").read_text()
    quick_start = readme[readme.index("## Quick start") : readme.index("## Commands")]
    assert "3,080,192 bytes" in quick_start and "large_messages: true" in quick_start


def test_example_names_every_key_of_the_reference() -> None:
    """The example says it has every key (README and the deploy files send readers to it): each
    key of README's configuration reference is in it, set or commented out."""
    readme = (EXAMPLE.parents[1] / "README.md").read_text()
    reference = readme[readme.index("## Configuration reference") : readme.index("## SMTP replies")]
    example = EXAMPLE.read_text()
    missing = []
    for row in reference.splitlines():
        if not row.startswith("| `"):
            continue
        keys = row.split("|")[1].split(" with ")[0]  # "`tenants[].tenant_id` with `delegated`"
        for key in re.findall(r"`([\w.\[\]]+)`", keys):
            leaf = key.rsplit(".", 1)[-1].removesuffix("[]")
            if not re.search(rf"\b{re.escape(leaf)}:", example):
                missing.append(key)
    assert missing == []
