"""Concurrent requests: one order per Idempotency-Key, and no oversell under 30 parallel orders."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from eventstore.models import StoredEvent

from .conftest import order_of, settle, stock_of

pytestmark = pytest.mark.django_db(transaction=True)


def _in_thread(fn: Any) -> Any:
    def run(*args: Any) -> Any:
        try:
            return fn(*args)
        finally:
            connection.close()

    return run


def _client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_concurrent_requests_with_one_key_create_one_order(token_for, stocked) -> None:
    stocked("SKU-K", 50)
    token = token_for("alice")
    body = {
        "items": [{"product_id": "SKU-K", "quantity": 1}],
        "payment": {"method": "card", "token": "tok_ok"},
    }

    @_in_thread
    def post(_: int) -> tuple[int, Any]:
        response = _client(token).post("/api/orders", body, format="json", HTTP_IDEMPOTENCY_KEY="same-key")
        return response.status_code, response

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(post, range(8)))
    statuses = [code for code, _ in results]
    assert set(statuses) <= {202, 409}, statuses
    assert StoredEvent.objects.filter(event_type="OrderCreated").count() == 1
    order_ids = {r.json()["order_id"] for code, r in results if code == 202}
    assert len(order_ids) == 1
    for code, response in results:
        if code == 409:
            assert response["Retry-After"] == "1"
    replay = _client(token).post("/api/orders", body, format="json", HTTP_IDEMPOTENCY_KEY="same-key")
    assert replay.status_code == 202 and replay.json()["order_id"] in order_ids


def test_thirty_parallel_orders_for_ten_units_never_oversell(token_for, stocked) -> None:
    stocked("SKU-HOT", 10)
    token = token_for("alice")
    body = {
        "items": [{"product_id": "SKU-HOT", "quantity": 1}],
        "payment": {"method": "card", "token": "tok_ok"},
    }

    @_in_thread
    def post(_: int) -> str:
        response = _client(token).post("/api/orders", body, format="json")
        assert response.status_code == 202
        return response.json()["order_id"]

    with ThreadPoolExecutor(max_workers=10) as pool:
        order_ids = list(pool.map(post, range(30)))
    settle()
    reader = _client(token)
    outcomes = [order_of(reader, order_id) for order_id in order_ids]
    completed = [o for o in outcomes if o["status"] == "COMPLETED"]
    failed = [o for o in outcomes if o["status"] == "FAILED"]
    assert len(completed) == 10
    assert len(failed) == 20 and {o["failure_reason"] for o in failed} == {"OUT_OF_STOCK"}
    assert stock_of("SKU-HOT") == (0, 0)
