"""Certificate credentials end to end: `cert create`, delivery signed by the certificate, check,
and a start refused with a clear reason when the key password is wrong."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.config import load_config
from gateway.emulator import EmulatorApp, EmulatorSettings, running_emulator
from tests.e2e.test_cli import run_cli
from tests.e2e.test_pipeline import MESSAGE
from tests.support.gateway import config_document, run_gateway, write_config


async def test_certificate_tenant_delivers_and_check_shows_the_thumbprint(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("key-pass-4411\n")
    created = await asyncio.to_thread(run_cli, "cert", "create", "--out", str(tmp_path),
                                      "--name", "contoso", "--password-file", str(tmp_path / "pw"))
    assert created.returncode == 0, created.stderr
    thumbprint = next(line.split()[-1] for line in created.stdout.splitlines()
                      if line.strip().startswith("thumbprint"))
    assert (tmp_path / "contoso.key").stat().st_mode & 0o777 == 0o600
    app = EmulatorApp(tenant_id="contoso-tenant", client_id="contoso-app",
                      certificate_pem=(tmp_path / "contoso.pem").read_bytes())
    async with running_emulator(EmulatorSettings(state_dir=tmp_path / "emu", apps=(app,))) as emu:
        document = config_document(tmp_path, emu)
        tenant = document["tenants"][0]
        del tenant["client_secret"]
        tenant["certificate"] = {"cert_file": str(tmp_path / "contoso.pem"),
                                 "key_file": str(tmp_path / "contoso.key"),
                                 "key_password_file": str(tmp_path / "pw")}
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
