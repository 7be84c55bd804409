"""Cache-first lists on the real Redis: fresh once an event is applied; Redis down still answers."""

from __future__ import annotations

import pytest
from django.core.cache import caches
from django.test import override_settings

from queries.models import OrderReadModel

from .conftest import created, day, deliver, event

pytestmark = pytest.mark.django_db

CLOSED_PORT_CACHE = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there: every call fails
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "IGNORE_EXCEPTIONS": True,
            "SOCKET_CONNECT_TIMEOUT": 0.5,
            "SOCKET_TIMEOUT": 0.5,
        },
    }
}


def test_cache_is_redis() -> None:
    from django_redis.cache import RedisCache

    assert isinstance(caches["default"], RedisCache)


def test_read_apply_read_again_is_fresh(alice_client, bob_client, django_capture_on_commit_callbacks) -> None:
    mine = created("alice", [("P-1", "Lamp", 1, "10.00")], at=day(1))
    with django_capture_on_commit_callbacks(execute=True):
        deliver(mine, created("bob", [("P-2", "Rug", 1, "5.00")], at=day(2)))
    assert alice_client.get("/api/orders").json()["results"][0]["status"] == "PENDING"
    bob_first = bob_client.get("/api/orders").json()

    # A change behind the projection's back is not seen: the answer comes from the cache.
    OrderReadModel.objects.filter(order_id=mine.aggregate_id).update(customer_id="alice", status="CANCELLED")
    assert alice_client.get("/api/orders").json()["results"][0]["status"] == "PENDING"

    with django_capture_on_commit_callbacks(execute=True):
        deliver(event(mine.aggregate_id, "OrderCompleted", 2, {}, at=day(1, 13)))

    fresh = alice_client.get("/api/orders").json()["results"][0]
    assert (fresh["status"], fresh["updated_at"]) == ("COMPLETED", "2026-01-01T13:00:00Z")
    assert alice_client.get("/api/orders/search?q=lamp").json()["results"][0]["status"] == "COMPLETED"
    # bob's orders did not change, and neither did his cached answer's content
    assert bob_client.get("/api/orders").json() == bob_first


def test_redis_down_still_200(alice_client, admin_client, django_capture_on_commit_callbacks) -> None:
    with override_settings(CACHES=CLOSED_PORT_CACHE):
        with django_capture_on_commit_callbacks(execute=True):  # the bump after commit fails quietly
            deliver(created("alice", [("P-1", "Lamp", 1, "10.00")], at=day(1)))
        for client, path in (
            (alice_client, "/api/orders"),
            (alice_client, "/api/orders/customer/alice"),
            (alice_client, "/api/orders/search?q=lamp"),
            (admin_client, "/api/orders/analytics"),
        ):
            response = client.get(path)
            assert response.status_code == 200, (path, response.content)
        assert alice_client.get("/api/orders").json()["count"] == 1
        assert caches["default"].get("anything") is None  # really the unreachable Redis
