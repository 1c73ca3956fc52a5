"""What docs/production.md tells an administrator to do works as written (issue #19): a
listener certificate from `cert create --server-name`, an app certificate whose key systemd
hands over with LoadCredential= (found in `$CREDENTIALS_DIRECTORY`), a configuration whose
every credential a step makes and a `LoadCredential=` line hands over, and a command that is
on the PATH before the guide runs it."""

from __future__ import annotations

import asyncio
import re
import smtplib
import ssl
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.emulator import Emulator, EmulatorApp, EmulatorSettings, running_emulator
from tests.e2e.test_cli import run_cli
from tests.e2e.test_pipeline import MESSAGE
from tests.support.gateway import config_document, run_gateway, write_config
from tests.support.process import GatewayProcess


async def cert_create(*args: str) -> str:
    created = await asyncio.to_thread(run_cli, "cert", "create", *args)
    assert created.returncode == 0, created.stderr
    return created.stdout


async def test_a_listener_certificate_from_cert_create_verifies(
    tmp_path: Path, emulator: Emulator
) -> None:
    printed = await cert_create(
        "--out",
        str(tmp_path),
        "--name",
        "relay",
        "--server-name",
        "relay.gateway.test",
        "--server-name",
        "localhost",
        "--server-name",
        "127.0.0.1",
    )
    assert "    smtp:\n      tls:\n" in printed and str(tmp_path / "relay.key") in printed
    smtp = {
        "hostname": "relay.gateway.test",
        "tls": {"cert_file": str(tmp_path / "relay.pem"), "key_file": str(tmp_path / "relay.key")},
        "listeners": [
            {"name": "submissions", "address": "127.0.0.1", "port": 0, "tls": "implicit"},
            {"name": "lan", "address": "127.0.0.1", "port": 0, "tls": "starttls"},
        ],
    }
    config = load_config(write_config(tmp_path, config_document(tmp_path, emulator, smtp=smtp)))
    # A device that verifies: it trusts this certificate and checks the name it connects to.
    context = ssl.create_default_context(cafile=str(tmp_path / "relay.pem"))
    async with run_gateway(config) as gateway:
        assert gateway.gateway.listeners is not None
        implicit = gateway.gateway.listeners.address("submissions")[1]
        starttls = gateway.gateway.listeners.address("lan")[1]

        def send() -> None:
            with smtplib.SMTP_SSL("127.0.0.1", implicit, context=context, timeout=10) as client:
                client.sendmail("scanner@contoso.com", ["alice@contoso.com"], MESSAGE)
            with smtplib.SMTP("localhost", starttls, timeout=10) as client:  # checked by name
                client.starttls(context=context)
                client.sendmail("scanner@contoso.com", ["alice@contoso.com"], MESSAGE)

        await asyncio.to_thread(send)
        await gateway.delivered(2)


async def test_a_listener_key_cannot_be_encrypted(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("secret-ish\n")
    refused = await asyncio.to_thread(
        run_cli,
        "cert",
        "create",
        "--out",
        str(tmp_path),
        "--server-name",
        "relay.gateway.test",
        "--password-file",
        str(tmp_path / "pw"),
    )
    assert refused.returncode == 1
    assert "a listener's key cannot be encrypted" in refused.stderr
    assert list(tmp_path.iterdir()) == [tmp_path / "pw"]  # nothing half-written


async def test_an_app_certificate_from_load_credential_delivers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under systemd the key, the certificate and the key's password are copied into
    $CREDENTIALS_DIRECTORY; the config names them by their credential names alone."""
    credentials = tmp_path / "credentials"  # what LoadCredential= makes, readable by us only
    (tmp_path / "pw").write_text("key-pass-7731\n")
    await cert_create(
        "--out", str(credentials), "--name", "contoso", "--password-file", str(tmp_path / "pw")
    )
    (credentials / "contoso-key-password").write_text("key-pass-7731\n")
    app = EmulatorApp(
        tenant_id="contoso-tenant",
        client_id="contoso-app",
        certificate_pem=(credentials / "contoso.pem").read_bytes(),
    )
    settings = EmulatorSettings(state_dir=tmp_path / "emu", apps=(app,))
    async with running_emulator(settings) as emulator:
        etc = tmp_path / "etc"  # the config's own folder has none of the files
        etc.mkdir()
        document = config_document(tmp_path, emulator)
        tenant = document["tenants"][0]
        del tenant["client_secret"]
        tenant["certificate"] = {
            "cert_file": "contoso.pem",
            "key_file": "contoso.key",
            "key_password_file": "contoso-key-password",
        }
        config = write_config(etc, document)
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
        gateway = await GatewayProcess.start(config)
        try:
            port = (await gateway.wait_for_event("listening"))["port"]

            def send() -> None:
                with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                    client.sendmail("scanner@contoso.com", ["alice@contoso.com"], MESSAGE)

            await asyncio.to_thread(send)
            [message] = await emulator.wait_delivered(1)
            assert message.client_id == "contoso-app"
        finally:
            gateway.kill()
            await gateway.wait_exit()
        checked = await asyncio.to_thread(run_cli, "check", "--config", str(config))
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "thumbprint" in checked.stdout


GUIDE = Path(__file__).resolve().parents[2] / "docs" / "production.md"
CREDENTIALS = "/etc/smtp-graph-gateway/credentials/"


def _blocks(guide: str, language: str) -> list[str]:
    return [block.split("```", 1)[0] for block in guide.split(f"```{language}\n")[1:]]


def _files_the_commands_make(guide: str) -> set[str]:
    """The files the guide's shell steps write: `cert create --name N` (N.pem, N.key, N.cer),
    `> FILE`, `-keyout FILE`, and anything installed into the credentials folder."""
    commands = "\n".join(_blocks(guide, "sh"))
    made = {
        f"{stem}{suffix}"
        for stem in re.findall(r"cert create\b.*?--name ([\w.-]+)", commands)
        for suffix in (".pem", ".key", ".cer")
    }
    made.update(re.findall(r">\s*([\w.-]+)", commands))
    made.update(re.findall(r"-keyout ([\w.-]+)", commands))
    made.update(re.findall(re.escape(CREDENTIALS) + r"([\w.-]+)", commands))
    return made


def test_the_guide_configuration_loads_from_its_credentials(tmp_path: Path) -> None:
    """The YAML in docs/production.md is valid as written when the service gets exactly the
    files the guide's `LoadCredential=` lines hand over, and a step of the guide makes each
    of them: a file the configuration names but the unit does not load passes `check` (run
    with the whole folder) and then stops the service with status 78."""
    guide = GUIDE.read_text()
    [text] = _blocks(guide, "yaml")
    [unit] = _blocks(guide, "ini")
    loaded = dict(re.findall(r"^LoadCredential=([^:\n]+):(\S+)$", unit, re.MULTILINE))
    for name, source in loaded.items():
        assert source == CREDENTIALS + name, f"{name} is loaded from {source}"
    missing = set(loaded) - _files_the_commands_make(guide)
    assert not missing, f"no step of the guide makes {sorted(missing)}"
    credentials = tmp_path / "credentials"  # what systemd gives the service: these files only
    credentials.mkdir()
    contents = {
        "contoso-key-password": "key-pass\n",
        "erp.hash": "$scrypt$n=16384,r=8,p=1$AAAA$BBBB\n",
    }
    for name in loaded:
        (credentials / name).write_text(contents.get(name, "checked when used\n"))
    (tmp_path / "tls.crt").write_text("checked when used\n")
    text = text.replace("/etc/smtp-graph-gateway/", f"{tmp_path}/").replace(
        "/var/lib/smtp-graph-gateway/", f"{tmp_path}/"
    )
    config_file = tmp_path / "config.yaml"
    config_file.write_text(text)
    config = load_config(config_file, env={"CREDENTIALS_DIRECTORY": str(credentials)})
    assert config.warnings == ()
    assert config.smtp.listeners[0].auth == "off"
    certificate = config.tenants[0].certificate
    assert certificate is not None and certificate.key_file == credentials / "contoso.key"
    assert config.smtp.listeners[0].tls_files is not None
    assert config.smtp.listeners[0].tls_files.key_file == credentials / "tls.key"
    assert "--format docker" in guide


def test_the_guide_puts_the_command_on_the_path_before_using_it() -> None:
    """Step 1 installs into a venv, whose bin/ is not on a fresh Debian's PATH; every later
    step runs plain `smtp-graph-gateway`."""
    guide = GUIDE.read_text()
    step = "ln -s /opt/smtp-graph-gateway/bin/smtp-graph-gateway /usr/local/bin/"
    assert step in guide
    link = guide.index(step)
    first_use = re.search(r"^[ (]*(umask 077; )?smtp-graph-gateway ", guide, re.MULTILINE)
    assert first_use is not None and link < first_use.start()
