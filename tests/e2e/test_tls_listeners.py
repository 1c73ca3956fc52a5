"""STARTTLS and implicit TLS listeners accept mail with a real certificate (trustme)."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from pathlib import Path

import pytest
import trustme

from gateway.emulator import Emulator
from tests.conftest import Logged
from tests.e2e.test_pipeline import MESSAGE
from tests.support.gateway import make_config, run_gateway
from tests.support.process import SmtpDialogue


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
            {
                "name": "starttls",
                "address": "127.0.0.1",
                "port": 0,
                "tls": "starttls",
                "require_tls": True,
            },
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
            with smtplib.SMTP_SSL(
                "127.0.0.1", implicit_port, context=context, timeout=10
            ) as client:
                client.sendmail("scanner@contoso.com", ["alice@contoso.com"], MESSAGE)

        before_tls = await asyncio.to_thread(over_starttls)
        await asyncio.to_thread(over_implicit)
        await gateway.delivered(2)
    assert before_tls[0] == 530  # require_tls: no mail before STARTTLS
    assert len(emulator.delivered()) == 2


async def test_reload_swaps_the_certificate_without_dropping_sessions(
    tmp_path: Path, emulator: Emulator
) -> None:
    old_ca, new_ca = trustme.CA(), trustme.CA()
    for ca, name in ((old_ca, "old"), (new_ca, "new")):
        leaf = ca.issue_cert("127.0.0.1")
        leaf.cert_chain_pems[0].write_to_path(str(tmp_path / f"{name}.crt"))
        leaf.private_key_pem.write_to_path(str(tmp_path / f"{name}.key"))

    def smtp(name: str) -> dict[str, object]:
        return {
            "tls": {
                "cert_file": str(tmp_path / f"{name}.crt"),
                "key_file": str(tmp_path / f"{name}.key"),
            },
            "listeners": [{"name": "lan", "address": "127.0.0.1", "port": 0, "tls": "starttls"}],
        }

    def trusting(ca: trustme.CA) -> ssl.SSLContext:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        return context

    config = make_config(tmp_path, emulator, smtp=smtp("old"))
    async with run_gateway(config) as gateway:
        port = gateway.smtp_address[1]
        # A session that started before the reload stays up.
        before = await asyncio.to_thread(smtplib.SMTP, "127.0.0.1", port, timeout=10)
        await asyncio.to_thread(before.starttls, context=trusting(old_ca))
        # The renewed certificate is picked up by SIGHUP's reload, with the port kept.
        make_config(tmp_path, emulator, smtp=smtp("new"))  # rewrites gateway.yaml
        assert await gateway.gateway.reload()

        def fresh(ca: trustme.CA) -> None:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                client.starttls(context=trusting(ca))

        await asyncio.to_thread(fresh, new_ca)
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.to_thread(fresh, old_ca)
        await asyncio.to_thread(
            before.sendmail, "scanner@contoso.com", ["alice@contoso.com"], MESSAGE
        )
        await asyncio.to_thread(before.quit)
        await gateway.delivered(1)


async def test_a_broken_starttls_handshake_is_the_clients_failure_not_a_crash(
    tmp_path: Path, emulator: Emulator, certificate, logged: Logged
) -> None:
    """A client that sends plain text after `220 Ready to start TLS` (or speaks a TLS version
    the listener refuses) used to be logged as `smtp_unexpected_error` with a traceback."""
    _ca, files = certificate
    smtp = {
        "hostname": "gateway.test",
        "tls": files,
        "listeners": [{"name": "lan", "address": "127.0.0.1", "port": 0, "tls": "starttls"}],
    }
    async with run_gateway(make_config(tmp_path, emulator, smtp=smtp)) as gateway:
        dialogue = await SmtpDialogue.open(*gateway.smtp_address)
        assert (await dialogue.command("EHLO printer")).startswith("250")
        assert (await dialogue.command("STARTTLS")).startswith("220")
        await dialogue.send_raw(b"EHLO printer\r\n" * 8)
        assert await dialogue.reader.read() == b""  # closed
        await dialogue.close()
    [failed] = logged("tls_handshake_failed")
    assert failed["peer"] == "127.0.0.1" and failed["listener"] == "lan"
    assert failed["reason"] == "WRONG_VERSION_NUMBER"
    assert logged("smtp_unexpected_error") == []
