"""Deployment assets: the systemd unit, the container image, Compose, alerts and dashboard.

The unit is verified and scored by the host's `systemd-analyze`, the Dockerfile linted by
hadolint (both skipped when the tool is missing); the alert rules and the dashboard may only
name metrics the gateway exports (`METRIC_NAMES`), so a renamed metric cannot silently leave
an alert that never fires.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from gateway.observability.metrics import METRIC_NAMES, Metrics

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "smtp-graph-gateway.service"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "deploy" / "compose.yaml"
ALERTS = ROOT / "monitoring" / "alerts.yml"
DASHBOARD = ROOT / "monitoring" / "grafana-dashboard.json"

MAX_EXPOSURE = 2.0
METRIC = re.compile(r"smtp_graph_gateway_[a-z_]+")


def _tool(name: str) -> str:
    """The tool's path: beside this Python (the venv's bin) first, then PATH; else skip."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed")
    return found


def _run(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def _strings(node: object) -> Iterator[str]:
    """Every string in a parsed YAML/JSON document."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def _exported_names() -> set[str]:
    """The series names a Prometheus query may use: METRIC_NAMES, plus a histogram's
    `_bucket`, `_sum` and `_count`."""
    histograms = {
        family.name for family in Metrics().registry.collect() if family.type == "histogram"
    }
    assert histograms <= set(METRIC_NAMES)
    return set(METRIC_NAMES) | {
        f"{name}{suffix}" for name in histograms for suffix in ("_bucket", "_sum", "_count")
    }


# --- systemd ---------------------------------------------------------------------------------


def test_unit_verifies(tmp_path: Path) -> None:
    systemd_analyze = _tool("systemd-analyze")
    text = UNIT.read_text()
    real = re.search(r"^ExecStart=(\S+)", text, re.MULTILINE)
    assert real is not None
    assert real.group(1).endswith("/smtp-graph-gateway")
    # verify insists that ExecStart exists: point it at this Python, keep the arguments.
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace(f"ExecStart={real.group(1)}", f"ExecStart={sys.executable}", 1))

    result = _run(systemd_analyze, "verify", "--man=no", str(unit), cwd=tmp_path)

    complaints = [
        line for line in (result.stdout + result.stderr).splitlines() if UNIT.name in line
    ]
    assert result.returncode == 0, result.stdout + result.stderr
    assert complaints == []


def test_unit_exposure_is_at_most_2(tmp_path: Path) -> None:
    systemd_analyze = _tool("systemd-analyze")
    unit = tmp_path / UNIT.name
    shutil.copy(UNIT, unit)

    result = _run(
        systemd_analyze,
        "security",
        "--no-pager",
        "--offline=true",
        f"--threshold={round(MAX_EXPOSURE * 10)}",
        str(unit),
        cwd=tmp_path,
    )

    output = result.stdout + result.stderr
    if "--offline" in result.stderr:  # systemd < 250 cannot score a unit file it has not loaded
        pytest.skip(f"systemd-analyze security: {result.stderr.strip()}")
    overall = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", output)
    assert result.returncode == 0, output
    assert overall is not None, output
    assert float(overall.group(1)) <= MAX_EXPOSURE


def test_unit_runs_unprivileged_and_lets_the_drain_finish() -> None:
    settings = dict(
        line.split("=", 1) for line in UNIT.read_text().splitlines() if re.match(r"^\w+=", line)
    )

    assert settings["Type"] == "notify"
    assert settings["DynamicUser"] == "yes"
    assert settings["StateDirectory"] == "smtp-graph-gateway"
    assert settings["UMask"] == "0077"
    assert settings["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    # Safe: test_certificates runs the daemon under the kernel's form of it.
    assert settings["MemoryDenyWriteExecute"] == "yes"
    # shutdown.drain_timeout defaults to 30s: systemd must wait longer before SIGKILL.
    assert int(settings["TimeoutStopSec"].removesuffix("s")) > 30


# --- container -------------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in joined.splitlines()]
    return [
        (word.upper(), rest.strip())
        for word, _, rest in (line.partition(" ") for line in lines if line and line[0] != "#")
    ]


def test_hadolint_is_clean() -> None:
    hadolint = _tool("hadolint")

    result = _run(hadolint, "--no-color", str(DOCKERFILE), cwd=ROOT)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_image_runs_as_non_root_with_a_readiness_healthcheck() -> None:
    instructions = _instructions()
    users = [arguments for name, arguments in instructions if name == "USER"]
    healthchecks = [arguments for name, arguments in instructions if name == "HEALTHCHECK"]

    assert users, "no USER: the container would run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert len(healthchecks) == 1
    assert "/readyz" in healthchecks[0]
    assert "ADD" not in {name for name, _ in instructions}
    assert ("STOPSIGNAL", "SIGTERM") in instructions


def test_build_context_leaves_out_local_state() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    assert patterns[0] == "*"
    assert {".git", ".venv", "demo-state"} <= set(patterns)
    assert not [pattern for pattern in patterns if pattern.startswith("!.")]


def test_compose_service_is_locked_down() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    (service,) = compose["services"].values()

    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    mounts = [
        volume
        if isinstance(volume, dict)
        else dict(zip(("source", "target"), volume.split(":"), strict=False))
        for volume in service["volumes"]
    ]
    named = {mount["target"] for mount in mounts if mount["source"] in compose["volumes"]}
    assert "/var/lib/smtp-graph-gateway" in named  # the spool outlives the container


# --- monitoring ------------------------------------------------------------------------------


def test_alert_rules_are_complete_and_use_exported_metrics() -> None:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    exported = _exported_names()

    assert rules
    for rule in rules:
        assert {"alert", "expr", "for"} <= rule.keys(), rule
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert {"summary", "description"} <= rule["annotations"].keys(), rule["alert"]
        assert set(METRIC.findall(rule["expr"])) <= exported, rule["alert"]


def test_dashboard_uses_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    used = {name for text in _strings(dashboard) for name in METRIC.findall(text)}

    assert expressions
    assert "DS_PROMETHEUS" in variables
    assert used <= _exported_names()
