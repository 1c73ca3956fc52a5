"""config/example.yaml documents real keys: it validates once the files it names exist."""

from __future__ import annotations

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
