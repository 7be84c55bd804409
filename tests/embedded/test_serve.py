"""``manage.py serve_embedded`` for real: one process serving HTTP, the bus and the scheduler.

The server runs as a subprocess on SQLite (migrated and seeded like ``make run`` does) and
is driven over HTTP, as a user of ``make run`` would.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .embedded_env import embedded_env, manage
from .server import DEMO_PASSWORD, EmbeddedServer, running_server

pytestmark = [pytest.mark.embedded, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A migrated, seeded embedded server, with DEBUG off so WhiteNoise serves the static files."""
    # The concurrency test logs in many times a minute; the login throttle has its own tests.
    with running_server(
        tmp_path_factory.mktemp("embedded"), DEBUG="false", API_THROTTLE_LOGIN="off"
    ) as embedded:
        yield embedded


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
