"""GET /api/orders and /api/orders/customer/{id}: filters, ordering, pagination, ownership."""

from __future__ import annotations

import pytest

from .conftest import created, day, deliver, event

pytestmark = pytest.mark.django_db


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    return response.json()


@pytest.fixture
def orders() -> dict[str, str]:
    """Five orders: alice has three, bob two, on different days, amounts and statuses."""
    made = {
        "a1": created("alice", [("P-1", "Desk Lamp", 1, "10.00")], at=day(1)),
        "a2": created("alice", [("P-2", "Oak Table", 2, "50.00")], at=day(2)),
        "a3": created("alice", [("P-1", "Desk Lamp", 3, "10.00")], at=day(3)),
        "b1": created("bob", [("P-2", "Oak Table", 1, "50.00")], at=day(4)),
        "b2": created("bob", [("P-3", "Wool Rug", 1, "5.50")], at=day(5)),
    }
    deliver(*made.values())
    deliver(event(made["a2"].aggregate_id, "OrderCompleted", 2, {}, at=day(2, 14)))
    deliver(event(made["b1"].aggregate_id, "OrderFailed", 2, {"reason": "OUT_OF_STOCK"}, at=day(4, 13)))
    return {key: message.aggregate_id for key, message in made.items()}


def _ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [item["order_id"] for item in response.json()["results"]]


def test_shape_and_default_ordering(admin_client, orders) -> None:
    body = admin_client.get("/api/orders").json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 5 and body["next"] is None and body["previous"] is None
    assert [r["order_id"] for r in body["results"]] == [orders[k] for k in ("b2", "b1", "a3", "a2", "a1")]
    first = body["results"][-1]
    assert first == {
        "order_id": orders["a1"],
        "customer_id": "alice",
        "status": "PENDING",
        "total_amount": "10.00",
        "created_at": "2026-01-01T12:00:00Z",
        "updated_at": "2026-01-01T12:00:00Z",
    }
    completed = next(r for r in body["results"] if r["order_id"] == orders["a2"])
    assert (completed["status"], completed["total_amount"], completed["updated_at"]) == (
        "COMPLETED",
        "100.00",
        "2026-01-02T14:00:00Z",
    )


def test_filters(admin_client, orders) -> None:
    assert _ids(admin_client.get("/api/orders?status=COMPLETED")) == [orders["a2"]]
    assert _ids(admin_client.get("/api/orders?status=FAILED")) == [orders["b1"]]
    assert set(_ids(admin_client.get("/api/orders?customer_id=bob"))) == {orders["b1"], orders["b2"]}
    assert set(_ids(admin_client.get("/api/orders?product_id=P-1"))) == {orders["a1"], orders["a3"]}
    assert _ids(admin_client.get("/api/orders?created_from=2026-01-02&created_to=2026-01-03")) == [
        orders["a3"],
        orders["a2"],
    ]
    assert _ids(admin_client.get("/api/orders?created_from=2026-01-04T12:00:00Z")) == [
        orders["b2"],
        orders["b1"],
    ]
    assert set(_ids(admin_client.get("/api/orders?min_total=30&max_total=50.00"))) == {
        orders["a3"],
        orders["b1"],
    }
    assert _ids(admin_client.get("/api/orders?customer_id=alice&product_id=P-1&min_total=20")) == [
        orders["a3"]
    ]
    assert _ids(admin_client.get("/api/orders?status=CANCELLED")) == []


def test_ordering(admin_client, orders) -> None:
    by_total = _ids(admin_client.get("/api/orders?ordering=total_amount"))
    assert by_total == [orders["b2"], orders["a1"], orders["a3"], orders["b1"], orders["a2"]]
    assert _ids(admin_client.get("/api/orders?ordering=-total_amount"))[0] == orders["a2"]
    assert _ids(admin_client.get("/api/orders?ordering=created_at")) == [
        orders[k] for k in ("a1", "a2", "a3", "b1", "b2")
    ]


def test_pagination(admin_client, orders) -> None:
    first = admin_client.get("/api/orders?page_size=2&ordering=created_at").json()
    assert first["count"] == 5 and first["previous"] is None
    assert [r["order_id"] for r in first["results"]] == [orders["a1"], orders["a2"]]
    assert first["next"].endswith("/api/orders?page_size=2&ordering=created_at&page=2")
    second = admin_client.get(first["next"]).json()
    assert [r["order_id"] for r in second["results"]] == [orders["a3"], orders["b1"]]
    assert second["previous"].endswith("page=1") and second["next"].endswith("page=3")
    last = admin_client.get("/api/orders?page_size=2&ordering=created_at&page=3").json()
    assert [r["order_id"] for r in last["results"]] == [orders["b2"]] and last["next"] is None
    beyond = admin_client.get("/api/orders?page_size=2&page=9").json()
    assert beyond["results"] == [] and beyond["count"] == 5
    assert len(admin_client.get("/api/orders?page_size=100").json()["results"]) == 5


@pytest.mark.parametrize(
    "query",
    [
        "status=SHIPPED",
        "status=pending",
        "ordering=customer_id",
        "created_from=yesterday",
        "created_to=2026-13-01",
        "min_total=abc",
        "max_total=NaN",
        "max_total=1e400",
        "page=0",
        "page=x",
        "page_size=101",
        "page_size=0",
        "product_id=%00",
        "customer_id=" + "x" * 300,
    ],
)
def test_bad_values_are_400(admin_client, alice_client, orders, query) -> None:
    problem = _problem(admin_client.get(f"/api/orders?{query}"), 400)
    if "%00" not in query:  # NUL may already be refused by the request-limits middleware
        assert problem["errors"][0]["pointer"] == "/" + query.split("=")[0]
    _problem(alice_client.get(f"/api/orders/customer/alice?{query}"), 400)


def test_a_user_sees_only_their_own_orders(alice_client, bob_client, orders) -> None:
    alice = {orders["a1"], orders["a2"], orders["a3"]}
    assert set(_ids(alice_client.get("/api/orders"))) == alice
    assert set(_ids(alice_client.get("/api/orders?customer_id=bob"))) == alice  # ignored for a USER
    assert set(_ids(alice_client.get("/api/orders?product_id=P-2"))) == {orders["a2"]}
    assert set(_ids(alice_client.get("/api/orders/customer/alice"))) == alice
    assert set(_ids(bob_client.get("/api/orders"))) == {orders["b1"], orders["b2"]}
    assert alice_client.get("/api/orders").json()["count"] == 3


def test_customer_endpoint(admin_client, alice_client, orders) -> None:
    assert set(_ids(admin_client.get("/api/orders/customer/bob"))) == {orders["b1"], orders["b2"]}
    assert _ids(admin_client.get("/api/orders/customer/nobody")) == []
    assert _ids(admin_client.get("/api/orders/customer/bob?status=FAILED")) == [orders["b1"]]
    _problem(alice_client.get("/api/orders/customer/bob"), 404)
    _problem(alice_client.get("/api/orders/customer/bob?status=SHIPPED"), 404)  # 404 before 400


def test_authentication_is_required(api_client, orders) -> None:
    for path in ("/api/orders", "/api/orders/customer/alice", "/api/orders/search?q=lamp"):
        _problem(api_client.get(path), 401)
    _problem(api_client.get("/api/orders/analytics"), 401)
