"""Cluster-mode deployment files: the Kubernetes manifests and the Compose files.

Every Kubernetes manifest is validated against the official API schemas that
`kubernetes-validate` bundles (strict: an unknown or misspelt field is an error), and the
Compose files against the Compose Specification schema that `check-jsonschema` vendors; both
work offline. Without them these tests are skipped, except under CI=true, where they fail.
The rest checks what an operator would notice: a Service that points at a port nothing
listens on, a budget that protects nothing, a grace period that cuts the drain short, a
config that names a file the pod does not have.
"""

from __future__ import annotations

import importlib
import ipaddress
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trustme
import yaml

from gateway.config import load_config, parse_duration

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
COMPOSE_CLUSTER = DEPLOY / "compose-cluster.yaml"
COMPOSE_FILES = (DEPLOY / "compose.yaml", COMPOSE_CLUSTER)
CLUSTER_CONFIG = DEPLOY / "cluster-config.yaml"
POSTGRES = DEPLOY / "postgres"

# The oldest Kubernetes the manifests must work on (topologySpreadConstraints' matchLabelKeys
# is on by default since 1.27), and the newest whose schemas kubernetes-validate bundles.
KUBERNETES_VERSIONS = ("1.29", "1.37")
# Applied by hand, on purpose not by `kubectl apply -k` (see kustomization.yaml).
NOT_IN_KUSTOMIZATION = {"secrets.example.yaml", "job-db-upgrade.yaml"}
KINDS = {
    "ServiceAccount",
    "ConfigMap",
    "Secret",
    "Deployment",
    "PodDisruptionBudget",
    "Service",
    "NetworkPolicy",
    "Job",
}
LISTENER_PORTS = {2525, 2587, 2465}
SMTP_PORTS = {25: 2525, 587: 2587, 465: 2465}
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

Manifest = dict[str, Any]


def _require(module: str, package: str) -> ModuleType:
    """Import a validator; skip without it, but fail under CI, which must install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        reason = f"{package} is not installed (pip install -e '.[test]')"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: CI must run the deployment checks")
        pytest.skip(reason)


# --- reading the manifests -----------------------------------------------------------------


def _manifest_files() -> list[Path]:
    return sorted(path for path in KUBERNETES.glob("*.yaml") if path.name != "kustomization.yaml")


def _manifests() -> list[tuple[Path, Manifest]]:
    return [
        (path, document)
        for path in _manifest_files()
        for document in yaml.safe_load_all(path.read_text())
        if document
    ]


def _one(kind: str, name: str | None = None) -> Manifest:
    found = [
        document
        for _, document in _manifests()
        if document["kind"] == kind and name in (None, document["metadata"]["name"])
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _deployment() -> Manifest:
    return _one("Deployment")


def _job() -> Manifest:
    return _one("Job")


def _pod_templates() -> dict[str, Manifest]:
    """The pod templates that run the gateway image: the Deployment's and the Job's."""
    return {
        "Deployment": _deployment()["spec"]["template"],
        "Job": _job()["spec"]["template"],
    }


def _gateway_config() -> dict[str, Any]:
    config = yaml.safe_load(_one("ConfigMap")["data"]["config.yaml"])
    assert isinstance(config, dict)
    return config


def _container(template: Manifest) -> Manifest:
    (container,) = template["spec"]["containers"]
    return container


def _container_ports(template: Manifest) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in _container(template)["ports"]}


def _resolve(port: int | str, template: Manifest) -> int:
    """A Service's or probe's port: a number, or the name of a container port."""
    return port if isinstance(port, int) else _container_ports(template)[port]


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def _listener_ports(config: dict[str, Any]) -> set[int]:
    return {listener["port"] for listener in config["smtp"]["listeners"]}


def _http_address(config: dict[str, Any]) -> str:
    return str(config["http"]["listen"].rpartition(":")[0].strip("[]"))


def _http_port(config: dict[str, Any]) -> int:
    return int(config["http"]["listen"].rpartition(":")[2])


def _drain_timeout(config: dict[str, Any]) -> float:
    return parse_duration(str(config.get("shutdown", {}).get("drain_timeout", "30s")))


def _files_named(config: dict[str, Any]) -> set[str]:
    """Every file the config makes the gateway read: `*_file` keys and the DSN's sslrootcert."""
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key.endswith("_file") and isinstance(value, str):
                    found.add(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(config)
    dsn = config["spool"]["postgresql"]["dsn"]
    found.update(re.findall(r"sslrootcert=(\S+)", dsn))
    return found


# --- schemas -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_manifests_match_the_api_schemas(version: str) -> None:
    kubernetes_validate = _require("kubernetes_validate", "kubernetes-validate")
    manifests = _manifests()
    problems = []
    for path, document in manifests:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(part) for part in error.path)
            problems.append(f"{path.name} {document['kind']}: {where}: {error.message}")

    assert {document["kind"] for _, document in manifests} == KINDS
    assert problems == []


@pytest.mark.parametrize("compose_file", COMPOSE_FILES, ids=lambda path: path.name)
def test_compose_file_matches_the_compose_specification(compose_file: Path) -> None:
    _require("check_jsonschema", "check-jsonschema")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(compose_file),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_kustomization_applies_every_manifest_but_the_deliberate_ones() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    files = {path.name for path in _manifest_files()}

    assert files >= NOT_IN_KUSTOMIZATION
    assert set(kustomization["resources"]) == files - NOT_IN_KUSTOMIZATION
    # Namespace-agnostic: `kubectl apply -n NAMESPACE` decides.
    assert [doc for _, doc in _manifests() if "namespace" in doc["metadata"]] == []


def test_example_secrets_hold_only_placeholders() -> None:
    secrets = [doc for _, doc in _manifests() if doc["kind"] == "Secret"]

    assert secrets
    for secret in secrets:
        assert "data" not in secret, secret["metadata"]["name"]
        for key, value in secret["stringData"].items():
            assert "REPLACE-ME" in value, f"{secret['metadata']['name']}.{key}"


# --- the Deployment, its budget and its Services -------------------------------------------


def test_at_least_two_gateways_on_different_nodes() -> None:
    deployment = _deployment()
    spec = deployment["spec"]
    labels = spec["template"]["metadata"]["labels"]
    by_node = [
        constraint
        for constraint in spec["template"]["spec"]["topologySpreadConstraints"]
        if constraint["topologyKey"] == "kubernetes.io/hostname"
    ]

    assert spec["replicas"] >= 2
    assert _selects(spec["selector"]["matchLabels"], labels)
    assert len(by_node) == 1
    assert by_node[0]["whenUnsatisfiable"] == "DoNotSchedule"
    assert by_node[0]["maxSkew"] == 1
    assert _selects(by_node[0]["labelSelector"]["matchLabels"], labels)
    # A rollout starts the new pod before stopping an old one.
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_disruption_budget_protects_the_gateways_not_the_upgrade_job() -> None:
    budget = _one("PodDisruptionBudget")["spec"]
    selector = budget["selector"]["matchLabels"]

    assert budget["minAvailable"] == 1
    assert budget["minAvailable"] < _deployment()["spec"]["replicas"]  # drains can proceed
    assert _selects(selector, _deployment()["spec"]["template"]["metadata"]["labels"])
    assert not _selects(selector, _job()["spec"]["template"]["metadata"]["labels"])


def test_smtp_service_keeps_client_addresses_and_reaches_the_listeners() -> None:
    service = _one("Service", "smtp-graph-gateway-smtp")["spec"]
    template = _deployment()["spec"]["template"]
    config = _gateway_config()

    assert service["type"] == "LoadBalancer"
    # Clients are authorised by source address: Cluster would replace it with a node's.
    assert service["externalTrafficPolicy"] == "Local"
    assert _selects(service["selector"], template["metadata"]["labels"])
    assert not _selects(service["selector"], _job()["spec"]["template"]["metadata"]["labels"])
    targets = {port["port"]: _resolve(port["targetPort"], template) for port in service["ports"]}
    assert targets == SMTP_PORTS
    assert set(targets.values()) == _listener_ports(config) == LISTENER_PORTS
    for listener in config["smtp"]["listeners"]:
        assert ipaddress.ip_address(listener["address"]).is_unspecified, listener["name"]


def test_probes_and_metrics_use_the_http_listen_port() -> None:
    template = _deployment()["spec"]["template"]
    container = _container(template)
    http_port = _http_port(_gateway_config())
    metrics = _one("Service", "smtp-graph-gateway-metrics")["spec"]

    # On every interface: the kubelet and Prometheus come from outside the pod.
    assert ipaddress.ip_address(_http_address(_gateway_config())).is_unspecified
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert _resolve(container[probe]["httpGet"]["port"], template) == http_port, probe
    assert metrics["type"] == "ClusterIP"
    assert _selects(metrics["selector"], template["metadata"]["labels"])
    assert [_resolve(port["targetPort"], template) for port in metrics["ports"]] == [http_port]


def test_grace_period_outlasts_the_prestop_pause_and_the_drain() -> None:
    pod = _deployment()["spec"]["template"]["spec"]
    pre_stop = _container(_deployment()["spec"]["template"])["lifecycle"]["preStop"]
    assert pre_stop["exec"]["command"][0] == "sleep"
    pause = int(pre_stop["exec"]["command"][1])

    assert _drain_timeout(_gateway_config()) == 30
    assert pod["terminationGracePeriodSeconds"] == 60
    assert pod["terminationGracePeriodSeconds"] > pause + _drain_timeout(_gateway_config())


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_pods_run_unprivileged_on_a_read_only_root(kind: str) -> None:
    template = _pod_templates()[kind]
    pod = template["spec"]
    container = _container(template)
    empty_dirs = {volume["name"] for volume in pod["volumes"] if "emptyDir" in volume}
    writable = {
        mount["mountPath"]
        for mount in container["volumeMounts"]
        if mount["name"] in empty_dirs and not mount.get("readOnly")
    }

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {"requests", "limits"} <= container["resources"].keys()
    assert {"cpu", "memory"} <= container["resources"]["limits"].keys()
    # The only writable places: HOME and TMPDIR, and spool.directory (large bodies).
    assert writable == {"/tmp", "/var/lib/smtp-graph-gateway"}
    assert _gateway_config()["spool"]["directory"].startswith("/var/lib/smtp-graph-gateway/")


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_every_file_and_variable_the_config_names_is_in_the_pod(kind: str) -> None:
    template = _pod_templates()[kind]
    container = _container(template)
    volumes = {volume["name"]: volume for volume in template["spec"]["volumes"]}
    config_map = _one("ConfigMap")

    def keys(source: Manifest, manifest_kind: str) -> list[str]:
        if "items" in source:
            return [item["path"] for item in source["items"]]
        name = source.get("name") or source["secretName"]
        manifest = _one(manifest_kind, name)
        return list(manifest.get("data") or manifest["stringData"])

    provided: set[str] = set()
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        sources = volume["projected"]["sources"] if "projected" in volume else [volume]
        for source in sources:
            for source_kind, manifest_kind in (("configMap", "ConfigMap"), ("secret", "Secret")):
                if source_kind in source:
                    provided.update(
                        f"{mount['mountPath']}/{key}"
                        for key in keys(source[source_kind], manifest_kind)
                    )
    config_file = container["args"][container["args"].index("--config") + 1]
    environment = {variable["name"] for variable in container.get("env", [])}
    text = config_map["data"]["config.yaml"]

    assert config_file in provided
    assert _files_named(_gateway_config()) <= provided
    assert set(ENV_REFERENCE.findall(text)) <= environment
    node = _gateway_config()["spool"]["postgresql"]["node"]
    assert node == "${POD_NAME}"
    (pod_name,) = [variable for variable in container["env"] if variable["name"] == "POD_NAME"]
    assert pod_name["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_db_upgrade_job_migrates_with_the_deployments_image_and_config() -> None:
    gateway = _container(_deployment()["spec"]["template"])
    job = _job()
    upgrade = _container(job["spec"]["template"])

    assert upgrade["image"] == gateway["image"]
    assert upgrade["args"][:2] == ["db", "upgrade"]
    assert upgrade["args"][2:] == gateway["args"][1:]  # --config, the same file
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    # The gateways leave migrations to the Job.
    assert _gateway_config()["spool"]["postgresql"]["upgrade_schema"] is False


def test_network_policy_admits_smtp_and_monitoring_and_lets_out_only_what_is_needed() -> None:
    policy = _one("NetworkPolicy")["spec"]
    labels = _deployment()["spec"]["template"]["metadata"]["labels"]
    ingress = {port["port"]: rule["from"] for rule in policy["ingress"] for port in rule["ports"]}
    egress = {
        (port["protocol"], port["port"]) for rule in policy["egress"] for port in rule["ports"]
    }
    config = _gateway_config()

    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    assert _selects(policy["podSelector"]["matchLabels"], labels)
    assert _selects(
        policy["podSelector"]["matchLabels"], _job()["spec"]["template"]["metadata"]["labels"]
    )
    assert set(ingress) == _listener_ports(config) | {_http_port(config)}
    assert all("ipBlock" in peer for port in _listener_ports(config) for peer in ingress[port])
    (monitoring,) = ingress[_http_port(config)]
    assert monitoring["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    assert egress == {("TCP", 5432), ("UDP", 53), ("TCP", 53), ("TCP", 443)}


# --- Compose -------------------------------------------------------------------------------


def _compose_cluster() -> dict[str, Any]:
    compose = yaml.safe_load(COMPOSE_CLUSTER.read_text())
    assert isinstance(compose, dict)
    return compose


def _cluster_config() -> dict[str, Any]:
    config = yaml.safe_load(CLUSTER_CONFIG.read_text())
    assert isinstance(config, dict)
    return config


def _published(service: dict[str, Any]) -> dict[int, int]:
    """host port → container port, for the short "[ip:]host:container" syntax."""
    ports = {}
    for entry in service.get("ports", []):
        host, container = entry.rsplit(":", 2)[-2:]
        ports[int(host)] = int(container)
    return ports


def test_compose_cluster_runs_two_named_gateways_after_the_schema_upgrade() -> None:
    services = _compose_cluster()["services"]
    gateways = {name: services[name] for name in ("gateway-a", "gateway-b")}
    upgrade = services["db-upgrade"]
    config = _cluster_config()

    assert config["spool"]["backend"] == "postgresql"
    assert config["spool"]["postgresql"]["node"] == "${NODE_NAME}"
    assert config["spool"]["postgresql"]["upgrade_schema"] is False
    assert {gateway["environment"]["NODE_NAME"] for gateway in gateways.values()} == set(gateways)
    assert upgrade["command"][:2] == ["db", "upgrade"]
    assert upgrade["restart"] == "no"
    assert upgrade["image"] == gateways["gateway-a"]["image"] == gateways["gateway-b"]["image"]
    for gateway in gateways.values():
        assert gateway["depends_on"]["db-upgrade"]["condition"] == "service_completed_successfully"
        assert gateway["read_only"] is True
        assert gateway["cap_drop"] == ["ALL"]
        assert parse_duration(gateway["stop_grace_period"]) > _drain_timeout(config)
    for database in ("db-primary", "db-standby"):
        assert upgrade["depends_on"][database]["condition"] == "service_healthy"


def test_compose_cluster_ports_reach_the_listeners_and_do_not_collide() -> None:
    services = _compose_cluster()["services"]
    config = _cluster_config()
    listened = _listener_ports(config) | {_http_port(config)}
    a, b = _published(services["gateway-a"]), _published(services["gateway-b"])

    assert {host: a[host] for host in SMTP_PORTS} == SMTP_PORTS
    assert set(a.values()) == set(b.values()) == listened
    assert not set(a) & set(b)
    for service in ("db-primary", "db-standby", "db-upgrade"):
        assert "ports" not in services[service], service  # the database stays on its network


def test_compose_cluster_gateways_have_every_file_their_config_names() -> None:
    compose = _compose_cluster()
    config = _cluster_config()
    files = _files_named(config)

    assert all(path.startswith("/run/secrets/") for path in files), files
    for name in ("gateway-a", "gateway-b", "db-upgrade"):
        service = compose["services"][name]
        secrets = {f"/run/secrets/{secret}" for secret in service["secrets"]}
        mounts = {mount["target"] for mount in service["volumes"]}
        assert files <= secrets, name
        assert "/etc/smtp-graph-gateway/config.yaml" in mounts, name
        assert set(ENV_REFERENCE.findall(CLUSTER_CONFIG.read_text())) <= set(
            service["environment"]
        ), name
    for secret in compose["secrets"].values():
        assert secret["file"].startswith("./secrets/")


def test_compose_cluster_database_commits_on_two_servers() -> None:
    services = _compose_cluster()["services"]
    config = _cluster_config()
    settings = dict(
        re.findall(r"^(\w+)\s*=\s*(.+?)\s*$", (POSTGRES / "primary.conf").read_text(), re.M)
    )
    standby_command = services["db-standby"]["command"]
    (cluster_name,) = [
        arg.split("=", 1)[1] for arg in standby_command if arg.startswith("cluster_name=")
    ]
    standby_script = (POSTGRES / "standby-entrypoint.sh").read_text()
    init_script = (POSTGRES / "init-primary.sh").read_text()
    dsn = dict(pair.split("=", 1) for pair in config["spool"]["postgresql"]["dsn"].split())

    assert services["db-primary"]["image"] == services["db-standby"]["image"] == "postgres:15"
    assert settings["wal_level"] == "replica"
    assert settings["synchronous_commit"] == "on"
    assert settings["synchronous_standby_names"] == f"'ANY 1 ({cluster_name})'"
    assert "--write-recovery-conf" in standby_script
    slot = re.search(r"--slot=(\w+)", standby_script)
    assert slot is not None
    assert f"pg_create_physical_replication_slot('{slot.group(1)}'" in init_script
    assert "host replication replicator" in init_script
    assert dsn["host"].split(",") == ["db-primary", "db-standby"]
    assert dsn["target_session_attrs"] == "read-write"


# --- the configs load ----------------------------------------------------------------------


def _config_text(source: str) -> str:
    if source == "kubernetes":
        return str(_one("ConfigMap")["data"]["config.yaml"])
    return CLUSTER_CONFIG.read_text()


@pytest.mark.parametrize(
    ("source", "env"),
    [
        ("kubernetes", {"POD_NAME": "smtp-graph-gateway-5d8f9-x7k2q"}),
        ("compose-cluster", {"NODE_NAME": "gateway-a"}),
    ],
    ids=["kubernetes", "compose-cluster"],
)
def test_cluster_config_loads(tmp_path: Path, source: str, env: dict[str, str]) -> None:
    # The pod's and the containers' paths, moved under tmp_path, with files in them.
    etc, secrets = tmp_path / "etc", tmp_path / "secrets"
    (etc / "tls").mkdir(parents=True)
    secrets.mkdir()
    ca = trustme.CA()
    cert = ca.issue_cert("relay.contoso.com")
    for path in (etc / "tls" / "tls.crt", secrets / "smtp-tls-cert"):
        cert.cert_chain_pems[0].write_to_path(str(path))
    for path in (etc / "tls" / "tls.key", secrets / "smtp-tls-key"):
        cert.private_key_pem.write_to_path(str(path))
    ca.cert_pem.write_to_path(str(etc / "db-ca.crt"))
    (secrets / "contoso-secret").write_text("secret-value\n")
    (secrets / "db-password").write_text("database-password\n")
    (secrets / "erp-password-hash").write_text("$scrypt$n=16384,r=8,p=1$AAAA$BBBB\n")
    moved = (
        _config_text(source)
        .replace("/etc/smtp-graph-gateway/", f"{etc}/")
        .replace("/run/secrets/smtp-graph-gateway/", f"{secrets}/")
        .replace("/run/secrets/", f"{secrets}/")
    )
    config_file = tmp_path / "config.yaml"
    config_file.write_text(moved)

    config = load_config(config_file, env=env)

    assert {listener.port for listener in config.smtp.listeners} == LISTENER_PORTS
    assert config.http is not None and config.http.port == 8025
    assert config.drain_timeout == 30
    assert config.tenants[0].client_secret.reveal() == "secret-value"
    assert config.spool.backend == "postgresql"
    assert config.spool.postgresql.node == next(iter(env.values()))  # this pod's, this container's
    assert config.spool.postgresql.password.reveal() == "database-password"
