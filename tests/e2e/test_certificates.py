"""Certificate credentials end to end: `cert create`, delivery signed by the certificate, check,
and a start refused with a clear reason when the key password is wrong."""

from __future__ import annotations

import asyncio
import signal
import smtplib
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trustme

from gateway.config import load_config
from gateway.emulator import EmulatorApp, EmulatorSettings, running_emulator
from tests.e2e.test_cli import run_cli
from tests.e2e.test_pipeline import MESSAGE
from tests.support.gateway import config_document, run_gateway, write_config
from tests.support.process import GatewayProcess


async def create_certificate(tmp_path: Path) -> str:
    """`cert create` for contoso in `tmp_path` (key password in `pw`); its output."""
    (tmp_path / "pw").write_text("key-pass-4411\n")
    created = await asyncio.to_thread(
        run_cli,
        "cert",
        "create",
        "--out",
        str(tmp_path),
        "--name",
        "contoso",
        "--password-file",
        str(tmp_path / "pw"),
    )
    assert created.returncode == 0, created.stderr
    return created.stdout


def certificate_app(tmp_path: Path) -> EmulatorApp:
    """The emulator's app registration that knows the created certificate."""
    return EmulatorApp(
        tenant_id="contoso-tenant",
        client_id="contoso-app",
        certificate_pem=(tmp_path / "contoso.pem").read_bytes(),
    )


def use_certificate(document: dict[str, Any], tmp_path: Path) -> None:
    """The test config's tenant signs in with the created certificate instead of a secret."""
    tenant = document["tenants"][0]
    del tenant["client_secret"]
    tenant["certificate"] = {
        "cert_file": str(tmp_path / "contoso.pem"),
        "key_file": str(tmp_path / "contoso.key"),
        "key_password_file": str(tmp_path / "pw"),
    }


async def test_certificate_tenant_delivers_and_check_shows_the_thumbprint(tmp_path: Path) -> None:
    created = await create_certificate(tmp_path)
    thumbprint = next(
        line.split()[-1] for line in created.splitlines() if line.strip().startswith("thumbprint")
    )
    assert (tmp_path / "contoso.key").stat().st_mode & 0o777 == 0o600
    settings = EmulatorSettings(state_dir=tmp_path / "emu", apps=(certificate_app(tmp_path),))
    async with running_emulator(settings) as emu:
        document = config_document(tmp_path, emu)
        use_certificate(document, tmp_path)
        config_file = write_config(tmp_path, document)
        async with run_gateway(load_config(config_file)) as gateway:
            assert await gateway.send("scanner@contoso.com", ["alice@contoso.com"], MESSAGE) == {}
            await gateway.delivered(1)
        assert emu.delivered()[0].client_id == "contoso-app"

        checked = await asyncio.to_thread(run_cli, "check", "--config", str(config_file))
        assert checked.returncode == 0, checked.stdout
        assert f"thumbprint {thumbprint}" in checked.stdout
        assert "729 days left" in checked.stdout or "730 days left" in checked.stdout

        (tmp_path / "pw").write_text("not-the-password\n")
        refused = await asyncio.to_thread(run_cli, "serve", "--config", str(config_file))
        assert refused.returncode == 78
        assert "tenants[0].certificate" in refused.stderr
        assert "password" in refused.stderr and "not-the-password" not in refused.stderr


# Python that runs the rest of its command line with no memory writable and executable: the
# kernel's PR_SET_MDWE (Linux 6.3+), which MemoryDenyWriteExecute=yes sets, kept across exec.
UNDER_MDWE = (
    sys.executable,
    "-c",
    "import ctypes, os, sys\n"
    "if ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0) != 0:\n"
    "    sys.exit(f'prctl(PR_SET_MDWE) failed: errno {ctypes.get_errno()}')\n"
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])\n",
)
WRITE_EXECUTE = "import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_WRITE | mmap.PROT_EXEC)"


async def test_the_daemon_works_where_memory_cannot_be_writable_and_executable(
    tmp_path: Path,
) -> None:
    """The unit sets MemoryDenyWriteExecute=yes. The real daemon, under the kernel's own
    form of it, signs its token request with a certificate (cryptography), answers over
    STARTTLS and delivers."""
    probe = subprocess.run(
        [*UNDER_MDWE, "-c", WRITE_EXECUTE], capture_output=True, text=True, timeout=30, check=False
    )
    if "prctl(PR_SET_MDWE) failed" in probe.stderr:
        pytest.skip(f"this kernel has no PR_SET_MDWE: {probe.stderr.strip()}")
    assert probe.returncode != 0 and "PermissionError" in probe.stderr  # the restriction holds

    await create_certificate(tmp_path)
    settings = EmulatorSettings(state_dir=tmp_path / "emu", apps=(certificate_app(tmp_path),))
    async with running_emulator(settings) as emu:
        ca = trustme.CA()
        leaf = ca.issue_cert("gateway.test")
        leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "tls.crt"))
        leaf.private_key_pem.write_to_path(str(tmp_path / "tls.key"))
        smtp = {
            "hostname": "gateway.test",
            "tls": {"cert_file": str(tmp_path / "tls.crt"), "key_file": str(tmp_path / "tls.key")},
            "listeners": [
                {
                    "name": "lan",
                    "address": "127.0.0.1",
                    "port": 0,
                    "tls": "starttls",
                    "require_tls": True,
                }
            ],
        }
        document = config_document(
            tmp_path, emu, smtp=smtp, logging={"level": "info", "format": "json"}
        )
        use_certificate(document, tmp_path)
        gateway = await GatewayProcess.start(write_config(tmp_path, document), python=UNDER_MDWE)
        try:
            port = (await gateway.wait_for_event("listening"))["port"]

            def send() -> None:
                context = ssl.create_default_context()
                ca.configure_trust(context)
                context.check_hostname = False  # the certificate names gateway.test
                with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
                    client.starttls(context=context)
                    client.sendmail("scanner@contoso.com", ["alice@contoso.com"], MESSAGE)

            await asyncio.to_thread(send)
            delivered = await gateway.wait_for_event("delivered", timeout=30)
        finally:
            gateway.process.send_signal(signal.SIGTERM)
            assert await gateway.wait_exit() == 0
    assert delivered["status"] == 202
    assert emu.delivered()[0].client_id == "contoso-app"
