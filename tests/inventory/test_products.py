"""inventory.public: upsert_product records StockAdjusted; catalogue reads current stock."""

from __future__ import annotations

from decimal import Decimal

import pytest

from eventstore.store import load_stream
from inventory.models import Product
from inventory.public import ProductInfo, catalogue, upsert_product

pytestmark = pytest.mark.django_db


def test_upsert_creates_then_records_only_real_changes() -> None:
    assert upsert_product(product_id="SKU-1", name="Mug", price=Decimal("25"), available=10) is True
    assert upsert_product(product_id="SKU-1", name="Mug", price=Decimal("25.00"), available=10) is False
    assert upsert_product(product_id="SKU-1", name="Mug", price=Decimal("25.00"), available=7) is False
    assert upsert_product(product_id="SKU-1", name="Big mug", price=Decimal("25.00"), available=7) is False

    events = load_stream("product-SKU-1")
    assert [(e.type, e.version) for e in events] == [
        ("StockAdjusted", 1),
        ("StockAdjusted", 2),
        ("StockAdjusted", 3),
    ]
    assert events[0].data == {
        "product_id": "SKU-1",
        "name": "Mug",
        "price": "25.00",
        "delta": 10,
        "available": 10,
    }
    assert events[1].data["delta"] == -3 and events[1].data["available"] == 7
    assert events[2].data["delta"] == 0 and events[2].data["name"] == "Big mug"
    assert events[0].aggregate_type == "product"
    row = Product.objects.get(product_id="SKU-1")
    assert (row.available, row.received, row.version) == (7, 7, 3)


def test_upsert_keeps_reserved_and_sold_and_rejects_bad_ids() -> None:
    from datetime import timedelta

    from django.utils import timezone

    from inventory.domain import Line
    from inventory.handlers import reserve_stock

    upsert_product(product_id="SKU-2", name="Pen", price=Decimal("1.50"), available=5)
    order_id = "11111111-1111-4111-8111-111111111111"
    reserve_stock(
        order_id=order_id,
        lines=[Line("SKU-2", 2)],
        expires_at=timezone.now() + timedelta(minutes=5),
        correlation_id=order_id,
        causation_id="",
    )
    upsert_product(product_id="SKU-2", name="Pen", price=Decimal("1.50"), available=10)
    row = Product.objects.get(product_id="SKU-2")
    assert (row.available, row.reserved, row.received) == (10, 2, 12)
    with pytest.raises(ValueError):
        upsert_product(product_id="bad id", name="x", price=Decimal("1"), available=1)


def test_catalogue_returns_known_products_only() -> None:
    upsert_product(product_id="SKU-3", name="Cup", price=Decimal("3.10"), available=4)
    found = catalogue(["SKU-3", "missing", "bad\u0000id", "SKU-3"])
    assert found == {
        "SKU-3": ProductInfo(product_id="SKU-3", name="Cup", price=Decimal("3.10"), available=4, reserved=0)
    }
