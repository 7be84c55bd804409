"""``manage.py serve_embedded`` for real: one process serving HTTP, the bus and the scheduler.

The server runs as a subprocess on SQLite (migrated and seeded like ``make run`` does) and
is driven over HTTP, as a user of ``make run`` would.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .embedded_env import ROOT, embedded_env, manage

pytestmark = [pytest.mark.embedded, pytest.mark.slow]

DEMO_PASSWORD = "demo-pass-123"


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class EmbeddedServer:
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
        return self.log_path.read_text(errors="replace")

    def access_token(self, username: str) -> str:
        reply = self.request("POST", "/api/auth/token", {"username": username, "password": DEMO_PASSWORD})
        assert reply.status == 200, reply.body
        return reply.json()["access"]


def free_port() -> int:
    """A free port in 8300-8399 (the range this suite's servers use)."""
    for port in range(8300, 8400):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 8300-8399")


def wait_until_ready(server: EmbeddedServer, timeout: float = 60) -> None:
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


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A migrated, seeded embedded server on a free port; stopped with SIGTERM at the end."""
    folder = tmp_path_factory.mktemp("embedded")
    env = embedded_env(folder)
    # DEBUG off: static files must then come from WhiteNoise, as in any real deployment.
    env["DEBUG"] = "false"
    # The concurrency test logs in many times a minute; the login throttle has its own tests.
    env["API_THROTTLE_LOGIN"] = "off"
    for command in (("migrate", "--noinput"), ("seed_demo",)):
        result = manage(*command, env=env)
        assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
    port = free_port()
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


def test_serve_embedded_refuses_in_stack_mode(tmp_path: Path) -> None:
    env = embedded_env(tmp_path)
    env["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/unused"
    result = manage("serve_embedded", "127.0.0.1:1", env=env, timeout=60)
    assert result.returncode != 0
    assert "embedded mode" in result.stderr


def test_health_endpoints_answer(server: EmbeddedServer) -> None:
    assert server.request("GET", "/health/live").status == 200
    ready = server.request("GET", "/health/ready")
    assert ready.status == 200, ready.body


def test_swagger_ui_is_served_with_its_local_static_files(server: EmbeddedServer) -> None:
    docs = server.request("GET", "/api/docs/")
    assert docs.status == 200
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', docs.body.decode())
    assert any("swagger-ui" in asset for asset in assets), docs.body[:2000]
    for asset in assets:
        assert server.request("GET", asset).status == 200, asset


def test_admin_and_its_static_files_are_served(server: EmbeddedServer) -> None:
    assert server.request("GET", "/admin/login/").status == 200
    css = server.request("GET", "/static/admin/css/base.css")
    assert css.status == 200
    assert b"body" in css.body


def test_demo_user_obtains_tokens(server: EmbeddedServer) -> None:
    reply = server.request("POST", "/api/auth/token", {"username": "alice", "password": DEMO_PASSWORD})
    assert reply.status == 200, reply.body
    assert set(reply.json()) >= {"access", "refresh"}


def test_concurrent_writes_do_not_lock_the_database(server: EmbeddedServer) -> None:
    # Each token request writes (the blacklist app records every refresh token issued); few,
    # since each also hashes a password, which holds the GIL for a while.
    def obtain(index: int) -> int:
        username = ("alice", "bob", "admin")[index % 3]
        body = {"username": username, "password": DEMO_PASSWORD}
        return server.request("POST", "/api/auth/token", body).status

    with ThreadPoolExecutor(max_workers=9) as pool:
        statuses = list(pool.map(obtain, range(9)))
    assert statuses == [200] * 9
    assert "database is locked" not in server.log()


def test_orders_complete_through_the_in_process_saga(server: EmbeddedServer) -> None:
    # given concurrent orders from two customers while the dispatcher thread runs the saga
    tokens = {name: server.access_token(name) for name in ("alice", "bob")}

    def place(index: int) -> str:
        body = {
            "items": [{"product_id": f"SKU-{index % 4 + 1:04d}", "quantity": 1}],
            "payment": {"method": "card", "token": "tok_ok"},
        }
        reply = server.request("POST", "/api/orders", body, token=tokens[("alice", "bob")[index % 2]])
        assert reply.status == 202, reply.body
        return reply.json()["order_id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        order_ids = list(pool.map(place, range(16)))

    # then every order completes, with no lock error on the way
    deadline = time.monotonic() + 60
    pending = set(order_ids)
    while pending and time.monotonic() < deadline:
        for order_id in list(pending):
            owner = tokens["alice"] if order_ids.index(order_id) % 2 == 0 else tokens["bob"]
            order = server.request("GET", f"/api/orders/{order_id}", token=owner).json()
            assert order["status"] not in ("FAILED", "CANCELLED"), order
            if order["status"] == "COMPLETED":
                pending.discard(order_id)
        time.sleep(0.2)
    assert not pending, f"not completed in time: {sorted(pending)}"
    assert "database is locked" not in server.log()
