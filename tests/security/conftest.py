"""Helpers of the security tests: a stocked catalogue, orders of alice, problem-document checks."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from config.problems import PROBLEM_CONTENT_TYPE

PRODUCT = "SEC-0001"
PRICE = "12.50"


def assert_problem(response, status: int) -> dict:
    """The response is an RFC 9457 problem document with ``status`` and nothing internal in it."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith(PROBLEM_CONTENT_TYPE)
    body = json.loads(response.content)
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert body["status"] == status
    assert body["type"].startswith("urn:oms:problem:")
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    text = response.content.decode()
    for leak in ("Traceback", 'File "', "psycopg", "django.", "rest_framework", "SELECT ", "Token class"):
        assert leak not in text, text
    return body


@pytest.fixture
def stocked(db: None) -> Callable[..., str]:
    """A factory putting a product in the catalogue; returns its id."""
    from inventory.public import upsert_product

    def stock(product_id: str = PRODUCT, available: int = 10_000, price: str = PRICE) -> str:
        upsert_product(
            product_id=product_id, name=f"Product {product_id}", price=Decimal(price), available=available
        )
        return product_id

    return stock


@pytest.fixture
def place_order(stocked) -> Callable[..., str]:
    """A factory: POST /api/orders with ``client`` (one line of PRODUCT), returns the order id."""
    stocked()

    def place(client: APIClient, quantity: int = 1, **extra: object) -> str:
        body = {
            "items": [{"product_id": PRODUCT, "quantity": quantity}],
            "payment": {"method": "card", "token": "tok_ok"},
            **extra,
        }
        response = client.post("/api/orders", body, format="json")
        assert response.status_code == 202, response.content
        return response.json()["order_id"]

    return place
