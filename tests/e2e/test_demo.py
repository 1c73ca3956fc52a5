"""README's first command: `smtp-graph-gateway demo` delivers a test message into the outbox."""

from __future__ import annotations

import http.cookiejar
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from gateway.config import load_config
from gateway.demo import demo_config
from tests.support.ports import free_port


def wait_for_files(folder: Path, pattern: str, count: int, timeout: float = 30) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(folder.glob(pattern)) if folder.exists() else []
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{count} {pattern} files did not appear in {folder}")


@pytest.fixture
def demo(tmp_path: Path):
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "demo",
            "--smtp-port",
            str(port),
            "--console-port",
            str(free_port()),
            "--state-dir",
            str(tmp_path / "demo"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("Press Ctrl-C"):
                break
        yield process, lines
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def printed(lines: list[str], prefix: str) -> str:
    return next(line.strip() for line in lines if line.strip().startswith(prefix))


def test_demo_prints_working_instructions_and_stops_on_ctrl_c(demo) -> None:
    process, lines = demo
    outbox = Path(printed(lines, "delivered mail:").split(":", 1)[1].split("(")[0].strip())
    subprocess.run(shlex.split(printed(lines, "python3 -c")), check=True, timeout=30)
    expected = 1
    if shutil.which("swaks"):
        subprocess.run(
            shlex.split(printed(lines, "swaks ")), check=True, timeout=30, capture_output=True
        )
        expected = 2
    delivered = wait_for_files(outbox, "*.eml", expected)
    assert b"Hello from the gateway" in delivered[0].read_bytes()
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=20) == 0


def test_demo_console_opens_with_the_printed_sign_in(demo, tmp_path: Path) -> None:
    _process, lines = demo
    line = printed(lines, "console:")
    match = re.fullmatch(
        r"console:\s+(http://127\.0\.0\.1:\d+/)\s+\(sign in as (\w+), password (\S+): "
        r"made for this run only\)",
        line,
    )
    assert match, line
    url, user, password = match.groups()
    config = (tmp_path / "demo" / "gateway.yaml").read_text()
    assert password not in config and "$scrypt$" in config  # only the hash is kept
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(url + "signin", timeout=10) as response:
        form = response.read().decode()
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf
    data = urllib.parse.urlencode(
        {"csrf": csrf.group(1), "username": user, "password": password, "next": "/"}
    ).encode()
    with opener.open(url + "signin", data=data, timeout=10) as response:
        page = response.read().decode()  # the redirect to the overview, followed
    assert response.url == url and 'id="ready"' in page and "Tenants" in page
    # The one-time link signs another browser in, once.
    link = printed(lines, "or open once:").split(":", 1)[1].strip()
    assert link.startswith(url + "signin/once?token=")
    fresh = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    with fresh.open(link, timeout=10) as response:
        assert response.url == url and 'id="ready"' in response.read().decode()
    try:
        fresh.open(link, timeout=10)
    except urllib.error.HTTPError as error:
        assert error.code == 401
    else:
        raise AssertionError("a spent link signed in again")


async def test_the_demo_configuration_draws_no_warning(tmp_path: Path, emulator) -> None:
    """A first run shows no `config_warning`: the demo's own configuration is a clean one."""
    document = demo_config(tmp_path, smtp_port=free_port(), emulator=emulator)
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(document))
    assert load_config(path).warnings == ()
