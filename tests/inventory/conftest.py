"""Helpers of the inventory tests: products made through the public entry point."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from eventstore.messages import Message, utc_iso
from inventory.domain import Line
from inventory.handlers import ReservationOutcome, reserve_stock
from inventory.models import Product


@pytest.fixture
def make_product(db: None) -> Callable[..., Product]:
    """A factory: ``make_product("SKU-1", available=5)`` → the stored row (via upsert_product)."""
    from inventory.public import upsert_product

    def make(product_id: str, *, available: int, price: str = "10.00", name: str = "") -> Product:
        upsert_product(
            product_id=product_id,
            name=name or f"Product {product_id}",
            price=Decimal(price),
            available=available,
        )
        return Product.objects.get(product_id=product_id)

    return make


def new_order_id() -> str:
    """A fresh order id."""
    return str(uuid.uuid4())


def assert_buckets_balance() -> None:
    """available + reserved + sold = received, all >= 0, for every product."""
    for row in Product.objects.all():
        assert min(row.available, row.reserved, row.sold) >= 0, row
        assert row.available + row.reserved + row.sold == row.received, row


def reserve(order_id: str, lines: list[Line]) -> ReservationOutcome:
    """Reserve ``lines`` for ``order_id``, expiring in five minutes."""
    return reserve_stock(
        order_id=order_id,
        lines=lines,
        expires_at=timezone.now() + timedelta(minutes=5),
        correlation_id=order_id,
        causation_id="",
    )


def reservation_command(command: str, order_id: str, **data: Any) -> Message:
    """A command to inventory about ``order_id``'s reservation, as the saga sends it."""
    return Message(
        message_id=str(uuid.uuid4()),
        kind="command",
        type=command,
        aggregate_type="reservation",
        aggregate_id=f"reservation-{order_id}",
        data={"order_id": order_id, **data},
        occurred_at=utc_iso(timezone.now()),
        correlation_id=order_id,
        causation_id=str(uuid.uuid4()),
        source="inventory",
    )
