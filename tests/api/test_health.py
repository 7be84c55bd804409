"""Liveness and readiness probes against the real PostgreSQL, RabbitMQ and Redis."""

import time

import pytest
from django.test import override_settings

pytestmark = pytest.mark.django_db

CLOSED_BROKER = "amqp://guest:guest@127.0.0.1:1/oms_h2_closed"
CLOSED_REDIS = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "IGNORE_EXCEPTIONS": True,
            "SOCKET_CONNECT_TIMEOUT": 0.5,
            "SOCKET_TIMEOUT": 0.5,
        },
    }
}


@pytest.fixture(autouse=True)
def _declared_topology() -> None:
    """Readiness needs the broker topology: declare it on this run's vhost (idempotent)."""
    from eventstore.topology import broker_connection, declare_topology

    with broker_connection() as connection:
        declare_topology(connection)


def test_live_is_200_without_auth(api_client):
    response = api_client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_is_200_when_database_broker_and_cache_answer(api_client):
    response = api_client.get("/health/ready")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "migrations": "ok", "broker": "ok", "topology": "ok", "cache": "ok"},
    }


def test_ready_ignores_a_bad_authorization_header(api_client):
    api_client.credentials(HTTP_AUTHORIZATION="Bearer garbage")
    assert api_client.get("/health/ready").status_code == 200
    assert api_client.get("/health/live").status_code == 200


def test_ready_is_503_naming_the_broker_when_it_is_down(api_client):
    with override_settings(BROKER_URL=CLOSED_BROKER, EMBEDDED=False):
        started = time.monotonic()
        response = api_client.get("/health/ready")
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 503
    assert body["type"] == "urn:oms:problem:service_unavailable"
    assert body["checks"]["broker"].startswith("down")
    assert "broker" in body["detail"]
    assert body["checks"]["database"] == "ok"
    # Public probe: no credentials or hosts in the answer.
    assert "guest" not in response.content.decode()
    assert "127.0.0.1" not in response.content.decode()
    assert elapsed < 2.5


def test_embedded_mode_counts_the_in_process_bus_as_up(api_client):
    with override_settings(BROKER_URL="", EMBEDDED=True):
        response = api_client.get("/health/ready")
    assert response.status_code == 200
    assert response.json()["checks"]["broker"] == "ok"


def test_cache_outage_is_reported_but_keeps_ready(api_client):
    with override_settings(CACHES=CLOSED_REDIS):
        response = api_client.get("/health/ready")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["cache"].startswith("down")


def test_ready_is_503_when_the_database_is_down(api_client, monkeypatch):
    # The check opens its own connection in its own thread; point new connections at a
    # closed port (the test's open connection is unaffected).
    from django.db import connections

    monkeypatch.setitem(connections.settings["default"], "PORT", "1")
    response = api_client.get("/health/ready")
    assert response.status_code == 503
    assert response["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 503
    assert body["checks"]["database"].startswith("down")
    assert body["checks"]["broker"] == "ok"
    assert "5432" not in response.content.decode()


def test_post_to_a_probe_is_a_405_problem(api_client):
    response = api_client.post("/health/live", {}, format="json")
    assert response.status_code == 405
    assert response["Content-Type"].startswith("application/problem+json")
