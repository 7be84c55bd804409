"""Helpers of the observability tests: reading /metrics the way Prometheus does, and a web
unit (gunicorn, consumers and relay sharing one PROMETHEUS_MULTIPROC_DIR) to scrape."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.stack import subprocess_env

ROOT = Path(__file__).resolve().parents[2]


def parse_metrics(text: str) -> dict[str, object]:
    """``/metrics`` text → ``{family name: family}`` (raises on malformed exposition text)."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample_value(families: dict[str, object], sample: str, **labels: str) -> float:
    """The value of one sample (0.0 when the series does not exist yet)."""
    total = 0.0
    for family in families.values():
        for s in family.samples:  # type: ignore[attr-defined]
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def free_port() -> int:
    """A free local port: any, or one of ``TEST_SERVER_PORTS`` (e.g. ``8630-8639``) when set."""
    ports = os.environ.get("TEST_SERVER_PORTS", "")
    candidates = range(int(ports.split("-")[0]), int(ports.split("-")[1]) + 1) if ports else [0]
    for port in candidates:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise RuntimeError(f"no free port in {ports}")


def http(method: str, url: str, *, token: str | None = None, body: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body else None)  # noqa: S310
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback test server
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


# The timestamp of every log line: ISO-8601 in UTC, milliseconds (config/logging.py).
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def json_lines(lines: list[str]) -> list[dict[str, Any]]:
    """Each line as one JSON object with the common fields, or the test fails naming it."""
    objects = []
    for number, line in enumerate(lines, start=1):
        try:
            value = json.loads(line)
        except ValueError:
            pytest.fail(f"line {number} is not JSON: {line!r}")
        assert isinstance(value, dict), line
        assert {"timestamp", "level", "logger", "event", "process"} <= value.keys(), line
        assert ISO_UTC.match(value["timestamp"]), line
        objects.append(value)
    return objects


def wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float = 30) -> None:
    """Wait until ``url`` answers 200; fail with the process's log if it exits or takes too long."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if http("GET", url)[0] == 200:
                return
        except OSError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


@pytest.fixture
def gunicorn_unit(stack_factory, tmp_path):
    """gunicorn (2 workers), consumers and relay sharing one PROMETHEUS_MULTIPROC_DIR."""
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    extra = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    stack_factory.consumer = stack_factory.start_consumer(**extra)
    stack_factory.relay = stack_factory.start_relay(**extra)
    port = free_port()
    log = (tmp_path / "gunicorn.log").open("ab")
    web = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            f"--config={ROOT / 'config' / 'gunicorn.conf.py'}",
            f"--bind=127.0.0.1:{port}",
            "--workers=2",
            # As deploy/run_stack.py runs it: POST /api/orders on the thin endpoint.
            "--worker-class=uvicorn_worker.UvicornWorker",
            "config.asgi:application",
        ],
        cwd=ROOT,
        env=subprocess_env(**extra),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{base}/health/live", web, tmp_path / "gunicorn.log")
        yield base
    finally:
        web.terminate()
        web.wait(timeout=20)
