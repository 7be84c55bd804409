"""The GitHub Actions workflow: valid YAML that runs .ci/run with the three services and a
coverage floor, and builds the image."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.deploy.tools import ROOT

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


def test_the_test_job_runs_ci_run_with_the_three_services(workflow):
    job = workflow["jobs"]["test"]
    assert {"postgres", "rabbitmq", "redis"} <= set(job["services"])
    assert re.search(r"(^|\s)bash \.ci/run\b", steps_text(job))
    assert (ROOT / ".ci" / "run").is_file()
    # The URLs point at the services' published ports, where .ci/run's check finds them up.
    ports = {port.split(":")[0] for service in job["services"].values() for port in service["ports"]}
    assert {"5432", "5672", "6379"} <= ports
    assert "127.0.0.1:5432" in job["env"]["DATABASE_URL"]


def test_the_coverage_floor_is_the_quality_gate(workflow):
    args = workflow["jobs"]["test"]["env"]["PYTEST_ARGS"]
    floor = re.search(r"--cov-fail-under=(\d+)", args)
    assert "--cov" in args.split() and floor
    assert 50 <= int(floor.group(1)) <= 100
    # make test passes PYTEST_ARGS on to pytest.
    assert "$(PY) -m pytest $(PYTEST_ARGS)" in (ROOT / "Makefile").read_text()


def test_the_image_is_built(workflow):
    assert "docker build" in steps_text(workflow["jobs"]["image"])
