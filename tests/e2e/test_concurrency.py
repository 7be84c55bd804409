"""Concurrent requests: one order per Idempotency-Key; reservations racing for the last units."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from django.db import connection
from rest_framework.test import APIClient

from eventstore.handling import handle
from eventstore.messages import Message
from eventstore.models import OutboxMessage, StoredEvent
from inventory.models import Product, Reservation
from payments.public import payment_status
from tests.fixtures.stack import wait_until

from .conftest import order_of, settle, stock_of

pytestmark = pytest.mark.django_db(transaction=True)

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}

T = TypeVar("T")


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


def _released_together(count: int, work: Callable[[int], T]) -> list[T]:
    """Run ``work(i)`` for i in range(count) on ``count`` threads released by one barrier.

    Each thread uses its own database connection (Django's are per thread), closed at its end.
    """
    start = threading.Barrier(count)

    def run(index: int) -> T:
        try:
            start.wait(timeout=60)
            return work(index)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def _settled(reader: APIClient, order_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Run the in-process bus until every order is terminal (a retried message is due later)."""

    def outcomes() -> dict[str, dict[str, Any]] | None:
        settle()
        bodies = {order_id: order_of(reader, order_id) for order_id in order_ids}
        return bodies if all(b["status"] in TERMINAL for b in bodies.values()) else None

    return wait_until(outcomes, timeout=60, interval=0.1, message="every order terminal")


BUYERS = 24
UNITS = 10


def test_parallel_reservations_of_the_last_units_never_oversell(token_for, stocked, settings) -> None:
    # every reservation of the race may run at the same time (the bulkhead would queue them)
    settings.INVENTORY_RESERVATION_CONCURRENCY = BUYERS
    settings.INVENTORY_RESERVATION_WAIT = 60
    stocked("SKU-HOT", UNITS)
    token = token_for("alice")
    quantities = [1 + index % 2 for index in range(BUYERS)]  # 36 units asked for, 10 on the shelf

    # given: the orders, placed in parallel; each POST sent its ReserveInventory with the order
    @_in_thread
    def post(index: int) -> str:
        body = {
            "items": [{"product_id": "SKU-HOT", "quantity": quantities[index]}],
            "payment": {"method": "card", "token": "tok_ok"},
        }
        response = _client(token).post("/api/orders", body, format="json")
        assert response.status_code == 202, response.content
        return response.json()["order_id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        order_ids = list(pool.map(post, range(BUYERS)))
    asked = dict(zip(order_ids, quantities, strict=True))
    rows = OutboxMessage.objects.filter(routing_key="inventory.ReserveInventory", sent_at__isnull=True)
    commands = [Message.from_body(row.body, routing_key=row.routing_key, headers=row.headers) for row in rows]
    assert sorted(command.correlation_id for command in commands) == sorted(order_ids)

    # when: the inventory context handles every reservation at the same instant, each on its
    # own connection (as competing consumers would)
    handled = _released_together(len(commands), lambda index: handle("inventory", commands[index]))
    assert handled == [True] * BUYERS

    # then: no unit is held twice, and every unit is accounted for
    held = {
        str(row.order_id): sum(item["quantity"] for item in row.items)
        for row in Reservation.objects.filter(state="HELD")
    }
    product = Product.objects.get(product_id="SKU-HOT")
    assert sum(held.values()) == product.reserved <= UNITS, (held, product.reserved)
    assert (product.available, product.sold, product.received) == (UNITS - product.reserved, 0, UNITS)
    assert all(asked[order_id] == quantity for order_id, quantity in held.items())
    reserved = StoredEvent.objects.filter(event_type="InventoryReserved")
    assert sorted(e.aggregate_id for e in reserved) == sorted(f"reservation-{o}" for o in held)
    refused = [order_id for order_id in order_ids if order_id not in held]
    failed = StoredEvent.objects.filter(event_type="InventoryReservationFailed")
    assert sorted(e.aggregate_id for e in failed) == sorted(f"reservation-{o}" for o in refused)
    # and nobody was refused while enough was left (the stock only went down during the race)
    assert all(asked[order_id] > product.available for order_id in refused), (asked, product.available)

    # when the sagas run to their end (the reservation commands, delivered again, change nothing)
    reader = _client(token)
    outcomes = _settled(reader, order_ids)

    # then exactly the holders completed, the others failed out of stock, and the stock balances
    completed = {o for o, body in outcomes.items() if body["status"] == "COMPLETED"}
    assert completed == set(held), {o: outcomes[o] for o in completed ^ set(held)}
    assert {(outcomes[o]["status"], outcomes[o]["failure_reason"]) for o in refused} == {
        ("FAILED", "OUT_OF_STOCK")
    }
    sold = sum(held.values())
    product.refresh_from_db()
    assert (product.available, product.reserved, product.sold, product.received) == (
        UNITS - sold,
        0,
        sold,
        UNITS,
    )
    confirmed = Reservation.objects.filter(state="CONFIRMED")
    assert sorted(str(row.order_id) for row in confirmed) == sorted(held)
    assert stock_of("SKU-HOT") == (UNITS - sold, 0)
    assert StoredEvent.objects.filter(event_type="InventoryReserved").count() == len(held)
    assert all(payment_status(o)["captures"] == 1 for o in held)
    assert all(payment_status(o) is None for o in refused)  # no payment was ever asked for
