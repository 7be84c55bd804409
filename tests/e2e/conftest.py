"""End-to-end helpers: products in the catalogue and running every context's handlers to rest."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient


@pytest.fixture
def stocked(transactional_db: None) -> Callable[..., None]:
    """A factory putting a product in the catalogue with ``available`` units."""
    from inventory.public import upsert_product

    def stock(product_id: str, available: int, price: str = "10.00", name: str | None = None) -> None:
        upsert_product(
            product_id=product_id, name=name or product_id, price=Decimal(price), available=available
        )

    return stock


def settle() -> None:
    """Dispatch the outbox to every subscribed context until nothing is due (in-process bus)."""
    from eventstore.bus import drain

    drain()


def place(client: APIClient, items: list[tuple[str, int]], token: str = "tok_ok", **extra: Any) -> str:  # noqa: S107 - a simulator card token
    """POST /api/orders and return the order id (asserting the 202 contract)."""
    body = {
        "items": [{"product_id": p, "quantity": q} for p, q in items],
        "payment": {"method": "card", "token": token},
        **extra,
    }
    response = client.post("/api/orders", body, format="json")
    assert response.status_code == 202, response.content
    order_id = response.json()["order_id"]
    assert response.json() == {"order_id": order_id, "status": "PENDING"}
    assert response["Location"] == f"/api/orders/{order_id}"
    return order_id


def order_of(client: APIClient, order_id: str) -> dict[str, Any]:
    """GET /api/orders/{order_id}."""
    response = client.get(f"/api/orders/{order_id}")
    assert response.status_code == 200, response.content
    return response.json()


def stock_of(product_id: str) -> tuple[int, int]:
    """(available, reserved) of a product."""
    from inventory.public import catalogue

    info = catalogue([product_id])[product_id]
    return info.available, info.reserved
