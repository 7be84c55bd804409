"""No mass assignment (issue 5 §3): fields a client must not set are ignored or refused, never honoured."""

from __future__ import annotations

import uuid

import pytest

from .conftest import PRICE, PRODUCT, assert_problem

pytestmark = pytest.mark.django_db


def test_an_order_takes_price_total_status_and_customer_only_from_the_server(alice_client, place_order):
    # given a USER who sends every field the server owns
    forged_id = str(uuid.uuid4())
    order_id = place_order(
        alice_client,
        quantity=2,
        customer_id="bob",
        order_id=forged_id,
        status="COMPLETED",
        total_amount="0.01",
        failure_reason=None,
        version=99,
    )
    order = alice_client.get(f"/api/orders/{order_id}").json()
    # then the catalogue, the token and the domain decided them
    assert order["customer_id"] == "alice"
    assert order["status"] == "PENDING"
    assert order["total_amount"] == "25.00"
    assert order["version"] != 99
    assert order_id != forged_id


def test_line_prices_and_names_from_the_client_are_ignored(alice_client, stocked):
    stocked()
    response = alice_client.post(
        "/api/orders",
        {
            "items": [{"product_id": PRODUCT, "quantity": 1, "price": "0.01", "product_name": "Free"}],
            "payment": {"method": "card", "token": "tok_ok", "amount": "0.01", "status": "CAPTURED"},
        },
        format="json",
    )
    assert response.status_code == 202, response.content
    order = alice_client.get(f"/api/orders/{response.json()['order_id']}").json()
    assert order["items"] == [
        {"product_id": PRODUCT, "product_name": f"Product {PRODUCT}", "quantity": 1, "price": PRICE}
    ]
    assert order["total_amount"] == PRICE


def test_bob_cannot_place_an_order_for_alice(bob_client, place_order):
    order_id = place_order(bob_client, customer_id="alice")
    assert bob_client.get(f"/api/orders/{order_id}").json()["customer_id"] == "bob"


@pytest.mark.django_db(transaction=True)
def test_a_payment_result_cannot_be_set_by_the_client(admin_client, alice_client, place_order, settings):
    settings.PAYMENT_BREAKER_PREFIX = f"test:h10:{uuid.uuid4().hex}"
    order_id = place_order(alice_client)
    forged = {
        "order_id": order_id,
        "amount": "12.50",
        "method": "card",
        "token": "tok_declined",
        "status": "CAPTURED",
        "captures": 1,
    }
    body = assert_problem(admin_client.post("/api/payments/process", forged, format="json"), 400)
    assert {error["pointer"] for error in body["errors"]} == {"/status", "/captures"}
    # without the forged members the simulator decides: the card is declined
    del forged["status"], forged["captures"]
    response = admin_client.post("/api/payments/process", forged, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "DECLINED"
    assert response.json()["captures"] == 0


def test_reserved_stock_cannot_be_written_through_the_product_endpoint(admin_client, stocked):
    stocked(available=5)
    response = admin_client.put(
        f"/api/inventory/{PRODUCT}",
        {"name": "X", "price": "1.00", "available": 7, "reserved": 1000, "product_id": "OTHER"},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["product_id"] == PRODUCT
    assert response.json()["reserved"] == 0
    assert response.json()["available"] == 7
    assert admin_client.get("/api/inventory/OTHER").status_code == 404


def test_status_change_cannot_pick_a_failure_reason_or_a_completed_status(
    admin_client, alice_client, place_order
):
    order_id = place_order(alice_client)
    response = admin_client.put(
        f"/api/orders/{order_id}/status", {"status": "COMPLETED", "reason": "x"}, format="json"
    )
    assert_problem(response, 409)
    assert alice_client.get(f"/api/orders/{order_id}").json()["status"] == "PENDING"
