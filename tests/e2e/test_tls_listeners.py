"""STARTTLS and implicit TLS listeners accept mail with a real certificate (trustme)."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from pathlib import Path

import pytest
import trustme

from gateway.emulator import Emulator
from tests.e2e.test_pipeline import MESSAGE
from tests.support.gateway import make_config, run_gateway


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[trustme.CA, dict[str, str]]:
    ca = trustme.CA()
    leaf = ca.issue_cert("gateway.test", "127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "tls.crt"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "tls.key"))
    return ca, {"cert_file": str(tmp_path / "tls.crt"), "key_file": str(tmp_path / "tls.key")}


async def test_starttls_and_implicit_tls(tmp_path: Path, emulator: Emulator, certificate) -> None:
    ca, files = certificate
    smtp = {
        "hostname": "gateway.test",
        "tls": files,
        "listeners": [
            {"name": "starttls", "address": "127.0.0.1", "port": 0, "tls": "starttls",
             "require_tls": True},
            {"name": "implicit", "address": "127.0.0.1", "port": 0, "tls": "implicit"},
        ],
    }
    context = ssl.create_default_context()
    ca.configure_trust(context)
    async with run_gateway(make_config(tmp_path, emulator, smtp=smtp)) as gateway:
        assert gateway.gateway.listeners is not None
        starttls_port = gateway.gateway.listeners.address("starttls")[1]
        implicit_port = gateway.gateway.listeners.address("implicit")[1]

        def over_starttls() -> tuple[int, bytes]:
            with smtplib.SMTP("127.0.0.1", starttls_port, timeout=10) as client:
                client.ehlo()
                refused = client.mail("scanner@contoso.com")
                client.starttls(context=context)
                client.ehlo()
                client.sendmail("scanner@contoso.com", ["alice@contoso.com"], MESSAGE)
                return refused

        def over_implicit() -> None:
            with smtplib.SMTP_SSL("127.0.0.1", implicit_port, context=context, timeout=10) as client:
                client.sendmail("scanner@contoso.com", ["alice@contoso.com"], MESSAGE)

        before_tls = await asyncio.to_thread(over_starttls)
        await asyncio.to_thread(over_implicit)
        await gateway.delivered(2)
    assert before_tls[0] == 530  # require_tls: no mail before STARTTLS
    assert len(emulator.delivered()) == 2
