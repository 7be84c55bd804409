"""Cache-aside stock reads on the real Redis: served from the cache, fresh after a change commits."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.utils import timezone

from inventory.domain import Line
from inventory.handlers import reserve_stock
from inventory.models import Product
from inventory.public import upsert_product
from inventory.stock_cache import product_key

pytestmark = pytest.mark.django_db


def test_cache_uses_redis() -> None:
    from django.core.cache import caches
    from django_redis.cache import RedisCache

    assert isinstance(caches["default"], RedisCache)


def test_read_is_served_from_cache_then_fresh_after_a_change(
    alice_client, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        upsert_product(product_id="C-1", name="Cached", price=Decimal("2.00"), available=5)

    first = alice_client.get("/api/inventory/C-1").json()
    assert cache.get(product_key("C-1")) == first

    # A write that bypasses the handlers is not seen: the read comes from the cache.
    Product.objects.filter(product_id="C-1").update(name="Changed behind the cache")
    assert alice_client.get("/api/inventory/C-1").json()["name"] == "Cached"

    order_id = str(uuid.uuid4())
    with django_capture_on_commit_callbacks(execute=True):
        reserve_stock(
            order_id=order_id,
            lines=[Line("C-1", 2)],
            expires_at=timezone.now() + timedelta(minutes=5),
            correlation_id=order_id,
            causation_id="",
        )
    assert cache.get(product_key("C-1")) is None

    fresh = alice_client.get("/api/inventory/C-1").json()
    assert (fresh["available"], fresh["reserved"], fresh["name"]) == (3, 2, "Changed behind the cache")


def test_put_invalidates_on_commit(admin_client, alice_client, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.put("/api/inventory/C-2", {"name": "A", "price": "1.00", "available": 1}, format="json")
    assert alice_client.get("/api/inventory/C-2").json()["available"] == 1
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.put("/api/inventory/C-2", {"name": "A", "price": "1.00", "available": 9}, format="json")
    assert alice_client.get("/api/inventory/C-2").json()["available"] == 9


def test_rolled_back_change_does_not_invalidate(alice_client, django_capture_on_commit_callbacks) -> None:
    from django.db import transaction

    with django_capture_on_commit_callbacks(execute=True):
        upsert_product(product_id="C-3", name="Kept", price=Decimal("2.00"), available=5)
    alice_client.get("/api/inventory/C-3")

    with pytest.raises(RuntimeError), transaction.atomic():
        upsert_product(product_id="C-3", name="Kept", price=Decimal("2.00"), available=1)
        raise RuntimeError("roll back")

    assert cache.get(product_key("C-3"))["available"] == 5
