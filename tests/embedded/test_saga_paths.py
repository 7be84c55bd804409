"""The saga's two main paths in the embedded mode (SQLite, in-process bus, no services).

A real ``serve_embedded`` process is driven over HTTP: an ADMIN stocks a product, alice
orders it, and the in-process bus runs the saga to its end — completed with a capture, or,
with ``tok_declined``, compensated with the stock restored to the unit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from .server import EmbeddedServer, running_server

pytestmark = [pytest.mark.embedded, pytest.mark.slow]

TERMINAL = {"COMPLETED", "CANCELLED", "FAILED"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """One embedded server for this module's tests (each uses its own product)."""
    with running_server(tmp_path_factory.mktemp("embedded-saga")) as embedded:
        yield embedded


@pytest.fixture(scope="module")
def tokens(server: EmbeddedServer) -> dict[str, str]:
    """Access tokens of alice (USER) and admin (ADMIN)."""
    return {name: server.access_token(name) for name in ("alice", "admin")}


def _stock(server: EmbeddedServer, token: str, product_id: str, *, available: int, price: str) -> None:
    reply = server.request(
        "PUT",
        f"/api/inventory/{product_id}",
        {"name": f"Embedded {product_id}", "price": price, "available": available},
        token=token,
    )
    assert reply.status == 201, reply.body


def _product(server: EmbeddedServer, token: str, product_id: str) -> dict[str, Any]:
    reply = server.request("GET", f"/api/inventory/{product_id}", token=token)
    assert reply.status == 200, reply.body
    return reply.json()


def _place(server: EmbeddedServer, token: str, product_id: str, quantity: int, card: str) -> str:
    body = {
        "items": [{"product_id": product_id, "quantity": quantity}],
        "payment": {"method": "card", "token": card},
    }
    reply = server.request("POST", "/api/orders", body, token=token)
    assert reply.status == 202, reply.body
    assert reply.json()["status"] == "PENDING"
    return reply.json()["order_id"]


def _terminal(server: EmbeddedServer, token: str, order_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        reply = server.request("GET", f"/api/orders/{order_id}", token=token)
        assert reply.status == 200, reply.body
        order = reply.json()
        if order["status"] in TERMINAL:
            return order
        if time.monotonic() > deadline:
            pytest.fail(f"order {order_id} not terminal in {timeout}s: {order}\n{server.log()[-4000:]}")
        time.sleep(0.1)


def test_happy_path_completes_with_one_capture(server: EmbeddedServer, tokens: dict[str, str]) -> None:
    # given 10 units at 12.50
    _stock(server, tokens["admin"], "EMB-HAPPY", available=10, price="12.50")

    # when alice orders 3 with a good card
    order_id = _place(server, tokens["alice"], "EMB-HAPPY", 3, "tok_ok")

    # then the saga completes, 3 units are sold and 37.50 captured once
    order = _terminal(server, tokens["alice"], order_id)
    outcome = (order["status"], order["failure_reason"], order["saga"]["state"])
    assert outcome == ("COMPLETED", None, "COMPLETED")
    assert order["total_amount"] == "37.50"
    assert order["items"] == [
        {"product_id": "EMB-HAPPY", "product_name": "Embedded EMB-HAPPY", "quantity": 3, "price": "12.50"}
    ]
    product = _product(server, tokens["alice"], "EMB-HAPPY")
    assert (product["available"], product["reserved"]) == (7, 0)
    payment = server.request("GET", f"/api/payments/{order_id}", token=tokens["alice"])
    assert payment.status == 200, payment.body
    assert {k: payment.json()[k] for k in ("status", "amount", "refunded_amount", "captures")} == {
        "status": "CAPTURED",
        "amount": "37.50",
        "refunded_amount": "0.00",
        "captures": 1,
    }


def test_declined_card_compensates_and_restores_the_stock(
    server: EmbeddedServer, tokens: dict[str, str]
) -> None:
    # given 6 units at 4.20, as the catalogue shows them before the order
    _stock(server, tokens["admin"], "EMB-DECL", available=6, price="4.20")
    before = _product(server, tokens["alice"], "EMB-DECL")
    assert (before["available"], before["reserved"]) == (6, 0)

    # when alice orders 4 with a card the gateway declines
    order_id = _place(server, tokens["alice"], "EMB-DECL", 4, "tok_declined")

    # then the order fails PAYMENT_DECLINED, the saga compensated, and the stock is exactly restored
    order = _terminal(server, tokens["alice"], order_id)
    assert (order["status"], order["failure_reason"], order["saga"]["state"]) == (
        "FAILED",
        "PAYMENT_DECLINED",
        "COMPENSATED",
    )
    assert order["saga"]["needs_attention"] is False
    assert _product(server, tokens["alice"], "EMB-DECL") == before
    payment = server.request("GET", f"/api/payments/{order_id}", token=tokens["alice"])
    assert payment.status == 200, payment.body
    assert (payment.json()["status"], payment.json()["captures"]) == ("DECLINED", 0)


def test_the_query_side_answers_from_sqlite(server: EmbeddedServer, tokens: dict[str, str]) -> None:
    # given a completed order of alice for a product with a distinctive word in its name
    reply = server.request(
        "PUT",
        "/api/inventory/EMB-QUERY",
        {"name": "Embedded Zanzibar Lamp", "price": "4.00", "available": 5},
        token=tokens["admin"],
    )
    assert reply.status == 201, reply.body
    order_id = _place(server, tokens["alice"], "EMB-QUERY", 2, "tok_ok")
    assert _terminal(server, tokens["alice"], order_id)["status"] == "COMPLETED"

    # when the read model has caught up (eventually consistent), alice lists and searches
    def listed() -> dict[str, Any]:
        path = "/api/orders?status=COMPLETED&product_id=EMB-QUERY"
        reply = server.request("GET", path, token=tokens["alice"])
        assert reply.status == 200, reply.body
        return reply.json()

    deadline = time.monotonic() + 15
    while listed()["count"] == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    page = listed()
    found = server.request("GET", "/api/orders/search?q=zanzibar", token=tokens["alice"])
    analytics = server.request("GET", "/api/orders/analytics", token=tokens["admin"])

    # then the list, the plain search fallback and the direct analytics all see the order
    assert [row["order_id"] for row in page["results"]] == [order_id]
    assert page["results"][0]["total_amount"] == "8.00"
    assert found.status == 200, found.body
    assert [row["order_id"] for row in found.json()["results"]] == [order_id]
    assert analytics.status == 200, analytics.body
    assert analytics.json()["orders_by_status"].get("COMPLETED", 0) >= 1
    assert any(p["product_id"] == "EMB-QUERY" for p in analytics.json()["top_products"])


def test_a_late_capture_ends_completed_with_one_capture(
    server: EmbeddedServer, tokens: dict[str, str]
) -> None:
    # given 5 units at 9.00
    _stock(server, tokens["admin"], "EMB-LATE", available=5, price="9.00")

    # when alice pays with a card whose capture lands only after the caller's timeout
    order_id = _place(server, tokens["alice"], "EMB-LATE", 2, "tok_late")

    # then the runner waits for that call instead of failing: completed with exactly one capture
    order = _terminal(server, tokens["alice"], order_id, timeout=60)
    assert (order["status"], order["failure_reason"]) == ("COMPLETED", None)
    payment = server.request("GET", f"/api/payments/{order_id}", token=tokens["alice"]).json()
    assert (payment["status"], payment["captures"], payment["refunded_amount"]) == ("CAPTURED", 1, "0.00")
    assert payment["attempts"] >= 1
    assert _product(server, tokens["alice"], "EMB-LATE")["available"] == 3
