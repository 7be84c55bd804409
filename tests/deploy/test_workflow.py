"""The GitHub Actions workflow: valid against GitHub's workflow schema (the copy check-jsonschema
ships, offline), runs .ci/run in a Debian container with the three services reached by name and
a coverage floor, and builds the image."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest
import yaml

from tests.deploy.tools import ROOT, tool

WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    loaded = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(loaded, dict)
    return loaded


def steps_text(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in job["steps"])


def test_it_is_a_workflow_triggered_on_pushes_and_pull_requests(workflow):
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert {"push", "pull_request"} <= set(triggers)
    assert workflow["permissions"] == {"contents": "read"}
    for job in workflow["jobs"].values():
        assert job["runs-on"] and job["steps"] and job["timeout-minutes"] <= 90


def check_workflow(path) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run(
        [
            tool("check-jsonschema", installed_by="check-jsonschema"),
            "--builtin-schema",
            "vendor.github-workflows",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_it_is_valid_against_the_github_workflow_schema():
    result = check_workflow(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "ci.yml"
    # a job without runs-on, and a step with an unknown key
    broken.write_text("on: push\njobs:\n  test:\n    steps:\n      - run: true\n        shell_: bash\n")
    result = check_workflow(broken)
    assert result.returncode == 1 and "runs-on" in result.stdout + result.stderr, result.stdout


def test_the_test_job_runs_ci_run_in_debian_with_the_three_services(workflow):
    job = workflow["jobs"]["test"]
    # Debian, where .ci/run installs chromium, chromium-driver and prometheus with apt.
    assert re.fullmatch(r"(python:3\.11-bookworm|debian:bookworm)(-slim)?", job["container"]["image"])
    assert {"postgres", "rabbitmq", "redis"} <= set(job["services"])
    assert re.search(r"(^|\s)bash \.ci/run\b", steps_text(job))
    assert (ROOT / ".ci" / "run").is_file()
    # In a container job the services are hosts named after them: no published ports needed,
    # and the URLs name them (deploy/ensure_services.sh then starts nothing locally).
    env = job["env"]
    assert "@postgres:5432/" in env["DATABASE_URL"]
    assert "@rabbitmq:5672/" in env["BROKER_URL"]
    assert env["REDIS_URL"].startswith("redis://redis:6379/")
    # The management API the tests fall back on for their vhosts (tests/fixtures/rabbitmq.py).
    assert job["services"]["rabbitmq"]["image"].endswith("-management")
    assert env["RABBITMQ_MANAGEMENT_URL"].endswith("@rabbitmq:15672")


def test_the_test_container_gets_what_the_backup_and_replica_tests_need(workflow):
    text = steps_text(workflow["jobs"]["test"])
    assert "postgresql-15" in text  # pg_dump, pg_basebackup, pg_ctl (deploy/replica.sh)
    assert "host replication all all trust" in text and "pg_reload_conf()" in text
    # The service is PostgreSQL 15 as well: pg_basebackup copies only its own major version.
    assert workflow["jobs"]["test"]["services"]["postgres"]["image"] == "postgres:15"


def test_the_coverage_floor_is_the_quality_gate(workflow):
    args = workflow["jobs"]["test"]["env"]["PYTEST_ARGS"]
    floor = re.search(r"--cov-fail-under=(\d+)", args)
    assert "--cov" in args.split() and floor
    assert 50 <= int(floor.group(1)) <= 100
    # make test passes PYTEST_ARGS on to pytest.
    assert "$(PY) -m pytest $(PYTEST_ARGS)" in (ROOT / "Makefile").read_text()


def test_the_image_is_built(workflow):
    assert "docker build" in steps_text(workflow["jobs"]["image"])
