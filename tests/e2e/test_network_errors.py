"""Network failures name the host, the real cause and what to check (issue #19): a CA that
does not sign the server's certificate, nothing listening, a name that does not resolve, a
proxy that cannot be reached — for Entra ID (msal, requests) and Graph (aiohttp) alike."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
import trustme

from gateway.emulator import Emulator
from gateway.errors import TransportError
from gateway.graph.client import open_graph_client
from tests.e2e.test_cli import run_cli
from tests.support.gateway import config_document, write_config


@pytest.fixture
def wrong_ca(tmp_path: Path) -> Path:
    """A CA certificate that did not sign the emulator's certificate."""
    path = tmp_path / "wrong-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def emulator_port(emulator: Emulator) -> int:
    return int(emulator.login_endpoint.rsplit(":", 1)[1].split("/")[0])


async def token_line(tmp_path: Path, emulator: Emulator, **tenant: object) -> str:
    document = config_document(tmp_path, emulator)
    document["tenants"][0].update(tenant)
    config = write_config(tmp_path, document)
    result = await asyncio.to_thread(run_cli, "check", "--config", str(config))
    assert result.returncode == 1, result.stdout
    [line] = [line for line in result.stdout.splitlines() if line.strip().startswith("token ")]
    assert "SSLError" not in line and "ConnectionError" not in line, line
    return line


async def test_a_certificate_the_ca_file_does_not_trust(
    tmp_path: Path, emulator: Emulator, wrong_ca: Path
) -> None:
    """It said `cannot reach Entra ID: SSLError`."""
    line = await token_line(tmp_path, emulator, ca_file=str(wrong_ca))
    port = emulator_port(emulator)
    assert f"cannot reach 127.0.0.1:{port}: certificate verify failed: " in line
    assert "issuer certificate" in line or "self-signed certificate" in line
    assert "ca_file" in line and "TLS-inspecting proxy" in line


async def test_nothing_listening(tmp_path: Path, emulator: Emulator, closed_port: int) -> None:
    line = await token_line(tmp_path, emulator, login_endpoint=f"https://127.0.0.1:{closed_port}")
    assert f"cannot reach 127.0.0.1:{closed_port}: connection refused" in line
    assert "proxy" in line and "firewall" in line


async def test_a_name_that_does_not_resolve(tmp_path: Path, emulator: Emulator) -> None:
    line = await token_line(tmp_path, emulator, login_endpoint="https://login.invalid")
    assert "cannot reach login.invalid:443: the name does not resolve" in line
    assert "check DNS on this host for login.invalid" in line


async def test_a_proxy_that_cannot_be_reached(
    tmp_path: Path, emulator: Emulator, closed_port: int
) -> None:
    document = config_document(tmp_path, emulator, proxy=f"http://127.0.0.1:{closed_port}")
    config = write_config(tmp_path, document)
    result = await asyncio.to_thread(run_cli, "check", "--config", str(config))
    assert result.returncode == 1
    port = emulator_port(emulator)
    assert (
        f"cannot reach 127.0.0.1:{port} through proxy 127.0.0.1:{closed_port}: connection refused"
        in result.stdout
    )


async def graph_error(
    emulator: Emulator, *, graph: str = "", ca_file: Path, proxy: str = ""
) -> str:
    async with open_graph_client(timeout=10, proxy=proxy) as client:
        with pytest.raises(TransportError) as caught:
            await client.send_json(
                graph_endpoint=graph or emulator.graph_endpoint,
                mailbox="scanner@contoso.com",
                payload={"message": {}},
                token="not-a-token",
                ca_file=ca_file,
            )
    assert caught.value.sent is False  # nothing reached Graph: no duplicate is possible
    return caught.value.reason


async def test_graph_requests_name_the_host_and_cause_too(
    emulator: Emulator, wrong_ca: Path, closed_port: int
) -> None:
    port = emulator_port(emulator)
    reason = await graph_error(emulator, ca_file=wrong_ca)
    assert reason.startswith(f"cannot reach 127.0.0.1:{port}: certificate verify failed: ")
    assert "ca_file" in reason
    reason = await graph_error(
        emulator, graph=f"https://127.0.0.1:{closed_port}/v1.0", ca_file=emulator.ca_file
    )
    assert reason.startswith(f"cannot reach 127.0.0.1:{closed_port}: connection refused")
    reason = await graph_error(
        emulator, ca_file=emulator.ca_file, proxy=f"http://127.0.0.1:{closed_port}"
    )
    assert f"through proxy 127.0.0.1:{closed_port}: connection refused" in reason
