"""A database connection the server ended between requests is replaced, with no SELECT 1 per request."""

from __future__ import annotations

import select
import time

import psycopg
import pytest
from django.db import connection

from config.connections import drop_closed_connections

pytestmark = pytest.mark.django_db(transaction=True)


def _server_ends_our_session() -> None:
    """pg_terminate_backend on this thread's connection, as a restart or an operator would."""
    raw = connection.connection
    assert raw is not None
    params = {k: v for k, v in raw.info.get_parameters().items() if k in ("host", "port", "user", "dbname")}
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [raw.info.backend_pid])
    deadline = time.monotonic() + 5
    while not select.select([raw.fileno()], [], [], 0.1)[0]:
        assert time.monotonic() < deadline, "the server did not end the session"


def _kept_between_requests() -> None:
    """Keep the connection across requests, as CONN_MAX_AGE does in the stack (tests use 0)."""
    connection.ensure_connection()
    connection.close_at = None


def test_a_request_after_the_server_ended_the_connection_succeeds(admin_client) -> None:
    _kept_between_requests()
    assert admin_client.get("/api/orders").status_code == 200
    assert connection.connection is not None and not connection.health_check_enabled

    _server_ends_our_session()
    response = admin_client.get("/api/orders")  # without the middleware: OperationalError

    assert response.status_code == 200


def test_a_live_idle_connection_is_kept() -> None:
    _kept_between_requests()
    raw = connection.connection
    assert drop_closed_connections() == 0
    assert connection.connection is raw

    _server_ends_our_session()
    assert drop_closed_connections() == 1
    assert connection.connection is None
