"""The inventory HTTP API (docs/api.md "Endpoints"): statuses, bodies, problem+json, strict validation."""

from __future__ import annotations

import uuid

import pytest

from eventstore.store import load_stream
from inventory.models import Product, Reservation

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"


def _put(client, product_id: str, **body):
    payload = {"name": "Mug", "price": "25.00", "available": 10} | body
    return client.put(f"/api/inventory/{product_id}", payload, format="json")


def _reserve(client, order_id: str, *lines: tuple[str, int]):
    items = [{"product_id": pid, "quantity": qty} for pid, qty in lines]
    return client.post("/api/inventory/reserve", {"order_id": order_id, "items": items}, format="json")


def test_put_creates_then_updates_and_records_stock_adjusted(admin_client) -> None:
    created = _put(admin_client, "SKU-9", price="25")
    assert created.status_code == 201
    assert created.json() == {
        "product_id": "SKU-9",
        "name": "Mug",
        "price": "25.00",
        "available": 10,
        "reserved": 0,
    }

    updated = _put(admin_client, "SKU-9", available=4)
    same = _put(admin_client, "SKU-9", available=4)

    assert (updated.status_code, same.status_code) == (200, 200)
    assert updated.json()["available"] == 4
    events = load_stream("product-SKU-9")
    assert [e.data["delta"] for e in events] == [10, -6]
    assert {e.type for e in events} == {"StockAdjusted"}


def test_get_is_open_to_any_user_and_404_for_unknown(admin_client, alice_client, api_client) -> None:
    _put(admin_client, "SKU-8", available=3, price="1.5")

    response = alice_client.get("/api/inventory/SKU-8")

    assert response.status_code == 200
    assert response.json() == {
        "product_id": "SKU-8",
        "name": "Mug",
        "price": "1.50",
        "available": 3,
        "reserved": 0,
    }
    assert alice_client.get("/api/inventory/NOPE").status_code == 404
    assert alice_client.get("/api/inventory/" + "x" * 65).status_code == 404  # breaks the id pattern
    assert alice_client.get("/api/inventory/bad%00id").status_code == 404
    unauthenticated = api_client.get("/api/inventory/SKU-8")
    assert unauthenticated.status_code == 401 and unauthenticated["Content-Type"] == PROBLEM


def test_writes_need_the_admin_role(alice_client, admin_client) -> None:
    _put(admin_client, "SKU-7", available=3)
    order_id = str(uuid.uuid4())
    responses = [
        _put(alice_client, "SKU-7", available=99),
        _reserve(alice_client, order_id, ("SKU-7", 1)),
        alice_client.post("/api/inventory/confirm", {"order_id": order_id}, format="json"),
        alice_client.post("/api/inventory/release", {"order_id": order_id}, format="json"),
    ]
    assert [r.status_code for r in responses] == [403, 403, 403, 403]
    assert all(r["Content-Type"] == PROBLEM for r in responses)
    assert Product.objects.get(product_id="SKU-7").available == 3


def test_admin_checks_run_before_input_validation(alice_client) -> None:
    assert _put(alice_client, "bad id!", price="oops").status_code == 403


@pytest.mark.parametrize(
    ("product_id", "body", "pointer"),
    [
        ("bad id!", {}, "/product_id"),
        ("SKU-1", {"price": "1.234"}, "/price"),
        ("SKU-1", {"price": "-1"}, "/price"),
        ("SKU-1", {"price": "NaN"}, "/price"),
        ("SKU-1", {"available": -1}, "/available"),
        ("SKU-1", {"available": "5"}, "/available"),
        ("SKU-1", {"available": 1.5}, "/available"),
        ("SKU-1", {"available": True}, "/available"),
        ("SKU-1", {"available": 10**12}, "/available"),
        ("SKU-1", {"name": "nul\u0000name"}, "/name"),
        ("SKU-1", {"name": "x" * 201}, "/name"),
        ("SKU-1", {"name": ""}, "/name"),
    ],
)
def test_put_rejects_bad_input_with_a_field_problem(admin_client, product_id, body, pointer) -> None:
    response = _put(admin_client, product_id, **body)
    assert response.status_code == 400
    assert response["Content-Type"] == PROBLEM
    assert pointer in [error["pointer"] for error in response.json()["errors"]]
    assert not Product.objects.exists()


def test_reserve_confirm_release_through_the_api(admin_client) -> None:
    _put(admin_client, "SKU-6", available=5)
    order_id = str(uuid.uuid4())

    reserved = _reserve(admin_client, order_id, ("SKU-6", 2))
    again = _reserve(admin_client, order_id, ("SKU-6", 2))
    confirmed = admin_client.post("/api/inventory/confirm", {"order_id": order_id}, format="json")
    released = admin_client.post("/api/inventory/release", {"order_id": order_id}, format="json")

    assert reserved.status_code == 200 and again.status_code == 200
    body = reserved.json()
    assert body["order_id"] == order_id and body["state"] == "HELD"
    assert body["items"] == [{"product_id": "SKU-6", "quantity": 2}] and body["expires_at"].endswith("Z")
    assert (confirmed.status_code, confirmed.json()["state"]) == (200, "CONFIRMED")
    assert (released.status_code, released.json()["state"]) == (200, "RELEASED")
    row = Product.objects.get(product_id="SKU-6")
    assert (row.available, row.reserved, row.sold) == (5, 0, 0)  # sold units restocked


def test_reserve_short_is_409_and_changes_nothing(admin_client) -> None:
    _put(admin_client, "SKU-5", available=5)
    _put(admin_client, "SKU-4", available=1)
    order_id = str(uuid.uuid4())

    response = _reserve(admin_client, order_id, ("SKU-5", 2), ("SKU-4", 2))

    assert response.status_code == 409 and response["Content-Type"] == PROBLEM
    assert response.json()["shortages"] == [{"product_id": "SKU-4", "requested": 2, "available": 1}]
    assert Product.objects.get(product_id="SKU-5").available == 5
    assert not Reservation.objects.exists()


def test_confirm_unknown_is_404_release_unknown_is_200_and_reserve_after_release_is_409(admin_client) -> None:
    _put(admin_client, "SKU-3", available=5)
    order_id = str(uuid.uuid4())

    confirm = admin_client.post("/api/inventory/confirm", {"order_id": order_id}, format="json")
    release = admin_client.post("/api/inventory/release", {"order_id": order_id}, format="json")
    late = _reserve(admin_client, order_id, ("SKU-3", 1))

    assert confirm.status_code == 404 and confirm["Content-Type"] == PROBLEM
    assert release.status_code == 200 and release.json()["items"] == []
    assert late.status_code == 409
    assert Product.objects.get(product_id="SKU-3").available == 5


def test_confirm_of_a_released_reservation_is_409(admin_client) -> None:
    _put(admin_client, "SKU-2", available=5)
    order_id = str(uuid.uuid4())
    _reserve(admin_client, order_id, ("SKU-2", 1))
    admin_client.post("/api/inventory/release", {"order_id": order_id}, format="json")
    response = admin_client.post("/api/inventory/confirm", {"order_id": order_id}, format="json")
    assert response.status_code == 409 and response["Content-Type"] == PROBLEM


@pytest.mark.parametrize(
    "body",
    [
        {"order_id": "not-a-uuid", "items": [{"product_id": "SKU-1", "quantity": 1}]},
        {"order_id": "ORDER", "items": []},
        {"order_id": "ORDER", "items": [{"product_id": "SKU-1", "quantity": 0}]},
        {"order_id": "ORDER", "items": [{"product_id": "SKU-1", "quantity": 1001}]},
        {"order_id": "ORDER", "items": [{"product_id": "SKU-1", "quantity": "1"}]},
        {"order_id": "ORDER", "items": [{"product_id": "SKU-1", "quantity": True}]},
        {"order_id": "ORDER", "items": [{"product_id": "SKU\u00001", "quantity": 1}]},
        {"order_id": "ORDER", "items": [{"product_id": "x" * 65, "quantity": 1}]},
        {"order_id": "ORDER", "items": [{"product_id": "SKU-1", "quantity": 1}] * 101},
        {"order_id": "ORDER", "items": "SKU-1"},
        {"order_id": "ORDER"},
        ["not", "an", "object"],
    ],
)
def test_reserve_rejects_bad_input(admin_client, body) -> None:
    if isinstance(body, dict) and body.get("order_id") == "ORDER":
        body = body | {"order_id": str(uuid.uuid4())}
    response = admin_client.post("/api/inventory/reserve", body, format="json")
    assert response.status_code == 400 and response["Content-Type"] == PROBLEM
    assert not Reservation.objects.exists()


def test_malformed_json_and_bad_order_ids_are_400(admin_client) -> None:
    broken = admin_client.post("/api/inventory/reserve", data="{", content_type="application/json")
    confirm = admin_client.post("/api/inventory/confirm", {"order_id": "nul\u0000"}, format="json")
    release = admin_client.post("/api/inventory/release", {}, format="json")
    assert [broken.status_code, confirm.status_code, release.status_code] == [400, 400, 400]


def test_paths_have_no_trailing_slash(admin_client) -> None:
    assert admin_client.get("/api/inventory/SKU-1/").status_code == 404
    assert admin_client.post("/api/inventory/reserve/", {}, format="json").status_code == 404


def test_catalogue_list_is_paginated_for_any_user(alice_client, admin_client):
    # given three products
    for n in range(3):
        admin_client.put(
            f"/api/inventory/LIST-{n}", {"name": f"P{n}", "price": "1.50", "available": 5}, format="json"
        )
    # when a USER lists them two by two
    first = alice_client.get("/api/inventory?page_size=2")
    second = alice_client.get(first.json()["next"])
    # then the pages cover the catalogue in product order
    assert first.status_code == 200
    assert first.json()["count"] == 3
    ids = [p["product_id"] for p in first.json()["results"] + second.json()["results"]]
    assert ids == ["LIST-0", "LIST-1", "LIST-2"]
    assert first.json()["results"][0] == {
        "product_id": "LIST-0",
        "name": "P0",
        "price": "1.50",
        "available": 5,
        "reserved": 0,
    }


@pytest.mark.parametrize(
    "query",
    ["page_size=0", "page_size=101", "page_size=abc", "page_size=-1", "page_size=%C2%B2", "page=0", "page=x"],
)
def test_catalogue_paging_is_validated_like_the_order_lists(alice_client, query):
    # issue 13: DRF read a bad page_size as the default and a bad page as a 404
    response = alice_client.get(f"/api/inventory?{query}")
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    name = query.split("=")[0]
    assert response.json()["errors"] == [{"pointer": f"/{name}", "detail": response.json()["detail"]}]
    same = alice_client.get(f"/api/orders?{query}")
    assert same.status_code == 400 and same.json()["errors"][0]["pointer"] == f"/{name}"


def test_catalogue_page_past_the_last_is_a_404_and_an_empty_value_the_default(alice_client, admin_client):
    _put(admin_client, "PAGE-1", name="P", price="1.00", available=1)
    assert alice_client.get("/api/inventory?page=2").status_code == 404
    assert alice_client.get("/api/inventory?page_size=&page=").json()["count"] >= 1
    assert alice_client.get("/api/inventory?page_size=100").status_code == 200
