"""docker-compose.yml without a Docker engine: valid against the Compose specification's JSON
schema (vendored: deploy/compose/compose-spec.json), secrets only from .env, ports on the
loopback, the one-shot migrate step, metrics, heartbeats and the observability services."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.tools import ROOT, check_command, promtool

COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = ROOT / "deploy" / "compose" / "compose-spec.json"
APP_SERVICES = ("migrate", "web", "consumers", "worker", "beat", "relay")
NON_WEB = ("consumers", "worker", "beat", "relay")
REQUIRED_VARIABLE = re.compile(r"\$\{(\w+):\?[^}]*\}")
SECRETS = (
    "SECRET_KEY",
    "JWT_SIGNING_KEY",
    "POSTGRES_PASSWORD",
    "RABBITMQ_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, Any]:
    return compose["services"]


def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft201909Validator.check_schema(schema)
    return jsonschema.Draft201909Validator(schema)


def test_it_is_valid_against_the_compose_specification(compose):
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator().iter_errors(compose)]
    assert errors == []


def test_the_schema_check_rejects_what_compose_would(compose):
    broken = json.loads(json.dumps(compose))
    broken["services"]["web"]["restart_policy"] = "always"  # not a service key
    broken["services"]["consumers"]["ports"] = "8000"  # not a list
    assert len(list(validator().iter_errors(broken))) == 2


def test_every_secret_comes_from_env_and_env_example_documents_it():
    text = COMPOSE.read_text()
    required = set(REQUIRED_VARIABLE.findall(text))
    assert set(SECRETS) <= required
    example = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*(\w+)=", example, flags=re.MULTILINE))
    assert required <= documented, required - documented
    # No literal key or password is left in the file.
    assert "demo-pass-123" not in text
    for name, service in yaml.safe_load(text)["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"SECRET|PASSWORD|_PASS$|SIGNING_KEY", key):
                assert str(value).startswith("${"), f"{name}: {key} is written in the file"
            if key.endswith("_URL") and "@" in str(value):
                assert "${" in str(value).split("@")[0], f"{name}: {key} carries a literal password"


def test_env_is_git_ignored_and_the_example_has_no_secret_values():
    result = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT)
    assert result.returncode == 0, ".env must be git-ignored"
    example = (ROOT / ".env.example").read_text()
    for name in SECRETS:
        assert re.search(rf"^{name}=$", example, flags=re.MULTILINE), f"{name} must be empty in the example"


def test_every_published_port_is_bound_to_the_loopback(services):
    for name, service in services.items():
        for port in service.get("ports", []):
            host = str(port).rsplit(":", 2)[0]
            assert host in ("127.0.0.1", "${WEB_BIND:-127.0.0.1}"), (
                f"{name} publishes {port} on all interfaces"
            )


def test_migrations_are_a_one_shot_step_every_app_service_waits_for(services):
    migrate = services["migrate"]
    assert migrate["restart"] == "no"
    script = migrate["command"][2]
    assert "manage.py migrate --noinput" in script and "manage.py declare_topology" in script
    check_command(migrate["command"])
    for name in APP_SERVICES[1:]:
        assert services[name]["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}


def test_app_services_run_the_projects_commands(services):
    for name in APP_SERVICES[1:]:
        command = services[name].get("command")
        if command is not None:  # web: the image's gunicorn command (test_dockerfile)
            check_command(command)
        test = services[name]["healthcheck"]["test"]
        assert test[0] == "CMD"
        check_command(test[1:])


def test_metrics_and_tracing_are_set_up_in_every_app_service(services):
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
        # The image's PROMETHEUS_MULTIPROC_DIR lives on this tmpfs (a path in the container).
        assert services[name]["tmpfs"] == ["/tmp"]  # noqa: S108
        assert services[name]["read_only"] is True
        assert services[name]["cap_drop"] == ["ALL"]
    for name in ("consumers", "worker", "relay"):
        assert services[name]["environment"]["METRICS_PORT"] == "9100"
    for name in NON_WEB:
        assert services[name]["environment"]["HEARTBEAT_FILE"] == "/tmp/heartbeat"  # noqa: S108 - in the container
        assert services[name]["healthcheck"]["test"][1:4] == ["python", "-I", "/app/config/heartbeat.py"]


def test_prometheus_grafana_and_jaeger_are_there_and_prometheus_scrapes_every_process(services):
    assert {"prometheus", "grafana", "jaeger"} <= set(services)
    volumes = " ".join(services["prometheus"]["volumes"] + services["grafana"]["volumes"])
    for source in re.findall(r"\./(\S+?):", volumes):
        assert (ROOT / source).exists(), source
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus-compose.yml").read_text())
    targets = {
        (name, sd["port"])
        for job in config["scrape_configs"]
        for sd in job["dns_sd_configs"]
        for name in sd["names"]
    }
    assert targets == {("web", 8000), ("consumers", 9100), ("relay", 9100), ("worker", 9100)}


def test_the_compose_prometheus_configuration_is_valid():
    result = subprocess.run(
        [promtool(), "check", "config", str(ROOT / "deploy" / "prometheus" / "prometheus-compose.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_exactly_one_beat(services):
    assert "deploy" not in services["beat"] or services["beat"]["deploy"].get("replicas", 1) == 1
