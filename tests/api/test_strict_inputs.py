"""Inputs are as strict as the OpenAPI description says (issue 12; found by schemathesis).

DRF read ``5`` or ``false`` as a UUID, a number as a name or a token, and a JSON number as a
price; the schema documents strings. Query values the schema allows no longer crash the lists.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def _refused(response, pointer: str) -> None:
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert pointer in [error["pointer"] for error in response.json()["errors"]], response.json()


@pytest.mark.parametrize("order_id", [0, 5, False, True, 1.5])
def test_an_order_id_is_a_uuid_string_not_a_number(admin_client, order_id):
    for path in ("/api/inventory/confirm", "/api/inventory/release", "/api/payments/refund"):
        _refused(admin_client.post(path, {"order_id": order_id}, format="json"), "/order_id")
    reserve = {"order_id": order_id, "items": [{"product_id": "SKU-1", "quantity": 1}]}
    _refused(admin_client.post("/api/inventory/reserve", reserve, format="json"), "/order_id")


@pytest.mark.parametrize("price", [0, 1.5, 25])
def test_money_is_a_string(admin_client, price):
    product = {"name": "Mug", "price": price, "available": 1}
    _refused(admin_client.put("/api/inventory/STRICT-1", product, format="json"), "/price")
    refund = {"order_id": "e3e70682-c209-4cac-a29f-6fbed82c07cd", "amount": price}
    _refused(admin_client.post("/api/payments/refund", refund, format="json"), "/amount")


def test_text_is_a_string(admin_client, alice_client, api_client):
    _refused(
        admin_client.put("/api/inventory/STRICT-2", {"name": 7, "price": "1.00", "available": 1}), "/name"
    )
    body = {"items": [{"product_id": 12, "quantity": 1}], "payment": {"method": "card", "token": 42}}
    response = alice_client.post("/api/orders", body, format="json")
    _refused(response, "/items/0/product_id")
    _refused(response, "/payment/token")
    _refused(api_client.post("/api/auth/token", {"username": 1, "password": 2}, format="json"), "/username")
    _refused(api_client.post("/api/auth/token/refresh", {"refresh": 3}, format="json"), "/refresh")


def test_strings_still_work(admin_client):
    created = admin_client.put(
        "/api/inventory/STRICT-3", {"name": "Mug", "price": "0025.5", "available": 1}, format="json"
    )
    assert created.status_code == 201, created.content
    assert created.json()["price"] == "25.50"


@pytest.mark.parametrize(
    "query",
    [
        "created_from=1197-10-31T12:58:01.111987-17:48",  # an offset PostgreSQL refuses
        "created_from=7435-03-21T03:24:24.69%2B21:45",
        "created_to=9999-12-31",  # the day after it does not exist
        "created_from=0001-01-01T00:00:00%2B05:00",  # before the first day there is, in UTC
    ],
)
def test_any_date_time_the_schema_allows_is_a_filter_not_a_crash(alice_client, query):
    for path in ("/api/orders", "/api/orders/search?q=mug&", "/api/orders/customer/alice"):
        joined = f"{path}{'' if path.endswith('&') else '?'}{query}"
        response = alice_client.get(joined)
        assert response.status_code == 200, (joined, response.content)
        assert response.json()["count"] == 0
