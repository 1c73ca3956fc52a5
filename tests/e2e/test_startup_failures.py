"""What an administrator sees when `serve` cannot start here, and what `check` finds first:
ports taken, TLS pairs that do not match, values that are probably mistakes (issue #19)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from gateway.emulator import Emulator
from tests.e2e.test_cli import run_cli
from tests.support.gateway import config_document, write_config
from tests.support.ports import free_port
from tests.support.process import GatewayProcess


@pytest.fixture
def taken() -> Iterator[int]:
    """A port on 127.0.0.1 that another process (this test) listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        yield holder.getsockname()[1]


def listeners(*ports: int) -> dict[str, object]:
    return {
        "hostname": "gateway.test",
        "listeners": [
            {"name": f"l{index}", "address": "127.0.0.1", "port": port}
            for index, port in enumerate(ports)
        ],
    }


def unparsed(process: GatewayProcess) -> str:
    """The plain-text lines the process wrote to stderr (the final error)."""
    return "\n".join(e.get("line", "") for e in process.events if e.get("event") == "unparsed")


async def test_a_port_in_use_is_one_error_with_exit_status_78(
    tmp_path: Path, emulator: Emulator, taken: int
) -> None:
    """It was a Python traceback and exit status 1, so systemd restarted it every 5 s."""
    other = free_port()
    document = config_document(tmp_path, emulator, smtp=listeners(other, taken))
    gateway = await GatewayProcess.start(write_config(tmp_path, document))
    try:
        assert await gateway.wait_exit() == 78
    finally:
        gateway.kill()
    text = unparsed(gateway)
    assert "Traceback" not in text
    assert "1 configuration error:" in text
    assert f"smtp.listeners[1]: cannot listen on 127.0.0.1:{taken}: Address already in use" in text
    assert f"ss -ltnp 'sport = :{taken}'" in text and "choose another port" in text
    # The listener that was bound is closed again: the port is free for the next start.
    with socket.socket() as again:
        again.bind(("127.0.0.1", other))


async def test_every_listener_that_cannot_bind_is_named_at_once(
    tmp_path: Path, emulator: Emulator, taken: int
) -> None:
    document = config_document(tmp_path, emulator, smtp=listeners(taken, 0))
    document["smtp"]["listeners"].append({"name": "nowhere", "address": "192.0.2.1", "port": 25})
    result = await asyncio.to_thread(
        run_cli, "serve", "--config", str(write_config(tmp_path, document))
    )
    assert result.returncode == 78, result.stderr
    assert "2 configuration errors" in result.stderr
    assert f"smtp.listeners[0]: cannot listen on 127.0.0.1:{taken}" in result.stderr
    assert "smtp.listeners[2]: cannot listen on 192.0.2.1:25" in result.stderr
    assert "this host has no such address" in result.stderr


async def test_the_http_endpoint_in_use_is_a_config_error_too(
    tmp_path: Path, emulator: Emulator, taken: int
) -> None:
    document = config_document(tmp_path, emulator, http={"listen": f"127.0.0.1:{taken}"})
    result = await asyncio.to_thread(
        run_cli, "serve", "--config", str(write_config(tmp_path, document))
    )
    assert result.returncode == 78, result.stderr
    assert f"http.listen: cannot listen on 127.0.0.1:{taken}: Address already in use" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


@pytest.fixture
def mismatched(tmp_path: Path) -> dict[str, str]:
    """A certificate and the key of another certificate."""
    ca = trustme.CA()
    one, other = ca.issue_cert("gateway.test"), ca.issue_cert("gateway.test")
    one.cert_chain_pems[0].write_to_path(str(tmp_path / "tls.crt"))
    other.private_key_pem.write_to_path(str(tmp_path / "tls.key"))
    return {"cert_file": str(tmp_path / "tls.crt"), "key_file": str(tmp_path / "tls.key")}


async def check(tmp_path: Path, document: dict[str, object], *args: str):
    config = write_config(tmp_path, document)
    return await asyncio.to_thread(run_cli, "check", "--config", str(config), *args)


def host_checks(stdout: str) -> dict[str, tuple[str, str]]:
    report = json.loads(stdout)["host"]
    return {line["check"]: (line["result"], line["detail"]) for line in report["checks"]}


async def test_check_tries_each_listener_and_the_http_endpoint(
    tmp_path: Path, emulator: Emulator, taken: int
) -> None:
    port, http = free_port(), free_port()
    document = config_document(tmp_path, emulator, smtp=listeners(port, taken))
    document["http"] = {"listen": f"127.0.0.1:{http}"}
    result = await check(tmp_path, document, "--json")
    assert result.returncode == 1, result.stdout
    checks = host_checks(result.stdout)
    assert checks["listener l0"] == ("ok", f"can listen on 127.0.0.1:{port}")
    assert checks["listener l1"][0] == "FAILED"
    assert checks["listener l1"][1].startswith(
        f"smtp.listeners[1]: cannot listen on 127.0.0.1:{taken}: Address already in use"
    )
    assert checks["http endpoint"] == ("ok", f"can listen on 127.0.0.1:{http}")
    assert json.loads(result.stdout)["tenants"][0]["ok"] is True  # the tenant itself is fine

    text = await check(tmp_path, document)
    assert "this host: FAILED" in text.stdout and "tenant contoso: ok" in text.stdout


async def test_check_fails_a_mismatched_tls_pair(
    tmp_path: Path, emulator: Emulator, mismatched: dict[str, str]
) -> None:
    """`serve` refused it; `check` said everything was fine."""
    smtp = listeners(0)
    smtp["tls"] = mismatched
    smtp["listeners"][0]["tls"] = "starttls"  # type: ignore[index]
    document = config_document(tmp_path, emulator, smtp=smtp)
    result = await check(tmp_path, document, "--json")
    assert result.returncode == 1
    result_, detail = host_checks(result.stdout)["listener l0 TLS"]
    assert result_ == "FAILED"
    assert detail.startswith("smtp.listeners[0]: cannot load certificate and key")
    assert "matching PEM pair" in detail


async def test_check_shows_a_good_tls_pair_with_its_expiry(
    tmp_path: Path, emulator: Emulator
) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("gateway.test")
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "tls.crt"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "tls.key"))
    smtp = listeners(0)
    smtp["tls"] = {"cert_file": str(tmp_path / "tls.crt"), "key_file": str(tmp_path / "tls.key")}
    smtp["listeners"][0]["tls"] = "implicit"  # type: ignore[index]
    result = await check(tmp_path, config_document(tmp_path, emulator, smtp=smtp), "--json")
    assert result.returncode == 0, result.stdout
    result_, detail = host_checks(result.stdout)["listener l0 TLS"]
    assert result_ == "ok" and detail.startswith("certificate and key match;")
    assert "expires" in detail


async def test_check_accepts_the_ports_of_the_gateway_already_running(
    tmp_path: Path, emulator: Emulator
) -> None:
    port = free_port()
    document = config_document(tmp_path, emulator, smtp=listeners(port))
    config = write_config(tmp_path, document)
    gateway = await GatewayProcess.start(config)
    try:
        await gateway.wait_for_event("started")
        result = await check(tmp_path, document, "--json")
        assert result.returncode == 0, result.stdout
        result_, detail = host_checks(result.stdout)["listener l0"]
        assert result_ == "ok" and "by the running gateway" in detail
    finally:
        gateway.kill()
        await gateway.wait_exit()


async def test_check_says_which_messages_are_refused_for_size(
    tmp_path: Path, emulator: Emulator
) -> None:
    """`smtp.max_message_size: 35MiB` (the example's) promised what no tenant could deliver."""
    document = config_document(tmp_path, emulator)
    result = await check(tmp_path, document)
    assert result.returncode == 0, result.stdout
    assert "smtp.max_message_size is 35 MiB, but messages over 3,080,192 bytes" in result.stdout
    assert "refused with 552 5.3.4: no tenant has large_messages: true" in result.stdout

    document["tenants"][0]["large_messages"] = True
    result = await check(tmp_path, document, "--json")
    assert host_checks(result.stdout)["message size"][0] == "ok"


async def test_warnings_are_logged_at_start_and_shown_by_check(
    tmp_path: Path, emulator: Emulator
) -> None:
    document = config_document(
        tmp_path,
        emulator,
        clients=[{"name": "printers", "networks": ["127.0.0.0/8"], "senders": ["s@fabrikam.com"]}],
    )
    config = write_config(tmp_path, document)
    gateway = await GatewayProcess.start(config)
    try:
        warnings = [await gateway.wait_for_event("config_warning") for _ in range(3)]
    finally:
        gateway.kill()
        await gateway.wait_exit()
    assert {w["path"] for w in warnings} == {
        "tenants[0].tenant_id",  # the test tenant's IDs are not GUIDs
        "tenants[0].client_id",
        "clients[0].senders[0]",
    }
    [sender] = [w for w in warnings if w["path"] == "clients[0].senders[0]"]
    assert "no tenant serves 'fabrikam.com'" in sender["problem"]
    assert "routing.default_tenant" in sender["hint"]

    result = await check(tmp_path, document, "--json")
    shown = json.loads(result.stdout)
    assert any(w.startswith("clients[0].senders[0]: no tenant serves") for w in shown["warnings"])
    assert result.returncode == 0  # warnings do not fail the check
    text = await check(tmp_path, document)
    assert "config " in text.stdout and ": ok, 3 warnings" in text.stdout
    assert "  WARN clients[0].senders[0]: no tenant serves 'fabrikam.com'" in text.stdout
