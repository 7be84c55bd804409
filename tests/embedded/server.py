"""An embedded server for tests: ``manage.py serve_embedded`` as a subprocess, driven over HTTP.

The server runs on SQLite in a temporary folder, migrated and seeded like ``make run`` does.
``running_server(folder)`` starts one and stops it with SIGTERM on exit; a test module wraps
it in a fixture of the scope it needs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .embedded_env import ROOT, embedded_env, manage

DEMO_PASSWORD = "demo-pass-123"


@dataclass
class Response:
    """An HTTP answer: status, headers and raw body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class EmbeddedServer:
    """A running ``serve_embedded`` process and how to talk to it."""

    base_url: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, token: str = ""
    ) -> Response:
        """One HTTP request; an error status is a response, not an exception."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)  # noqa: S310
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:  # noqa: S310
                return Response(reply.status, dict(reply.headers), reply.read())
        except urllib.error.HTTPError as error:
            return Response(error.code, dict(error.headers), error.read())

    def log(self) -> str:
        """The server's output so far."""
        return self.log_path.read_text(errors="replace")

    def access_token(self, username: str) -> str:
        """An access token of a demo user."""
        reply = self.request("POST", "/api/auth/token", {"username": username, "password": DEMO_PASSWORD})
        assert reply.status == 200, reply.body
        return reply.json()["access"]


def free_port() -> int:
    """A free port in 8300-8399 (the range this suite's servers use; ``TEST_SERVER_PORTS``, e.g.
    ``8630-8639``, narrows it when several runs share a machine)."""
    first, last = (int(p) for p in os.environ.get("TEST_SERVER_PORTS", "8300-8399").split("-"))
    for port in range(first, last + 1):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {first}-{last}")


def wait_until_ready(server: EmbeddedServer, timeout: float = 60) -> None:
    """Wait for ``/health/ready`` to answer 200; fail with the server's log otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"serve_embedded exited with {server.process.returncode}:\n{server.log()}")
        try:
            if server.request("GET", "/health/ready").status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"serve_embedded not ready in {timeout}s:\n{server.log()}")


@contextmanager
def running_server(folder: Path, port: int | None = None, **extra_env: str) -> Iterator[EmbeddedServer]:
    """A migrated, seeded embedded server on ``port`` (a free one by default); SIGTERM on exit."""
    env = embedded_env(folder) | extra_env
    for command in (("migrate", "--noinput"), ("seed_demo",)):
        result = manage(*command, env=env)
        assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
    port = port or free_port()
    log_path = folder / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "serve_embedded", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    embedded = EmbeddedServer(f"http://127.0.0.1:{port}", log_path, process)
    try:
        wait_until_ready(embedded)
        yield embedded
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
