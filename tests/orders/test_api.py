"""The orders API contract: statuses, validation, ownership and Idempotency-Key (docs/api.md "Endpoints")."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from eventstore.models import OutboxMessage, StoredEvent
from orders.models import IdempotencyRecord

pytestmark = pytest.mark.django_db

BODY = {"items": [{"product_id": "SKU-A", "quantity": 2}], "payment": {"method": "card", "token": "tok_ok"}}


@pytest.fixture(autouse=True)
def products(db: None) -> None:
    from inventory.public import upsert_product

    upsert_product(product_id="SKU-A", name="Alpha", price=Decimal("12.50"), available=10)


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    return response.json()


def test_place_returns_202_with_location_and_the_order_is_readable(alice_client) -> None:
    response = alice_client.post("/api/orders", BODY, format="json")
    assert response.status_code == 202
    order_id = response.json()["order_id"]
    assert response["Location"] == f"/api/orders/{order_id}"
    order = alice_client.get(f"/api/orders/{order_id}").json()
    assert set(order) == {
        "order_id",
        "customer_id",
        "status",
        "total_amount",
        "items",
        "saga",
        "failure_reason",
        "created_at",
        "updated_at",
        "version",
    }
    assert (order["customer_id"], order["total_amount"], order["status"]) == ("alice", "25.00", "PENDING")
    assert order["items"] == [
        {"product_id": "SKU-A", "product_name": "Alpha", "quantity": 2, "price": "12.50"}
    ]
    assert set(order["saga"]) == {"state", "step", "attempts", "deadline", "needs_attention"}
    assert order["saga"]["deadline"].endswith("Z")


def test_a_users_customer_id_is_ignored(alice_client) -> None:
    response = alice_client.post("/api/orders", {**BODY, "customer_id": "bob"}, format="json")
    order = alice_client.get(f"/api/orders/{response.json()['order_id']}").json()
    assert order["customer_id"] == "alice"


def test_an_admin_must_name_the_customer(admin_client, bob_client) -> None:
    problem = _problem(admin_client.post("/api/orders", BODY, format="json"), 400)
    assert problem["errors"][0]["pointer"] == "/customer_id"
    response = admin_client.post("/api/orders", {**BODY, "customer_id": "bob"}, format="json")
    assert response.status_code == 202
    assert bob_client.get(response["Location"]).json()["customer_id"] == "bob"


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"items": BODY["items"]}, "/payment"),
        ({**BODY, "items": []}, "/items"),
        ({**BODY, "items": [{"product_id": "SKU-A", "quantity": 0}]}, "/items/0/quantity"),
        ({**BODY, "items": [{"product_id": "SKU-A", "quantity": 1001}]}, "/items/0/quantity"),
        ({**BODY, "items": [{"product_id": "SKU-A", "quantity": "2"}]}, "/items/0/quantity"),
        ({**BODY, "items": [{"product_id": "SKU-A", "quantity": True}]}, "/items/0/quantity"),
        ({**BODY, "items": [{"product_id": f"P{i}", "quantity": 1} for i in range(101)]}, "/items"),
        ({**BODY, "items": [{"product_id": "SKU-NOPE", "quantity": 1}]}, "/items/0/product_id"),
        ({**BODY, "items": [{"product_id": "bad\u0000id", "quantity": 1}]}, "/items/0/product_id"),
        ({**BODY, "payment": {"method": "cash", "token": "t"}}, "/payment/method"),
        ({**BODY, "payment": {"method": "card", "token": "t\u0000"}}, "/payment/token"),
        ({**BODY, "items": [BODY["items"][0], BODY["items"][0]]}, "/items"),
    ],
)
def test_bad_input_is_a_400_that_changes_nothing(alice_client, body, pointer) -> None:
    problem = _problem(alice_client.post("/api/orders", body, format="json"), 400)
    assert pointer in [error["pointer"] for error in problem["errors"]]
    assert not StoredEvent.objects.filter(event_type="OrderCreated").exists()
    assert not OutboxMessage.objects.filter(body__kind="command").exists()


def test_a_body_that_is_not_an_object_is_a_400(alice_client) -> None:
    _problem(alice_client.post("/api/orders", [1, 2], format="json"), 400)
    _problem(alice_client.post("/api/orders", "{broken", content_type="application/json"), 400)


def test_auth_and_ownership(api_client, alice_client, bob_client, admin_client) -> None:
    _problem(api_client.post("/api/orders", BODY, format="json"), 401)
    order_id = alice_client.post("/api/orders", BODY, format="json").json()["order_id"]
    _problem(api_client.get(f"/api/orders/{order_id}"), 401)
    _problem(bob_client.get(f"/api/orders/{order_id}"), 404)
    _problem(bob_client.delete(f"/api/orders/{order_id}"), 404)
    _problem(alice_client.get(f"/api/orders/{uuid.uuid4()}"), 404)
    assert admin_client.get(f"/api/orders/{order_id}").status_code == 200
    _problem(alice_client.put(f"/api/orders/{order_id}/status", {"status": "CANCELLED"}, format="json"), 403)


def test_paths_are_exact(alice_client) -> None:
    order_id = alice_client.post("/api/orders", BODY, format="json").json()["order_id"]
    assert alice_client.get(f"/api/orders/{order_id}/").status_code == 404
    assert alice_client.post("/api/orders/", BODY, format="json").status_code == 404
    _problem(alice_client.get("/api/orders/search"), 400)  # the query side's search needs q
    _problem(alice_client.get("/api/orders/not-a-uuid"), 404)
    _problem(alice_client.put("/api/orders", BODY, format="json"), 405)
    assert alice_client.get("/api/orders").status_code == 200  # GET is the query side's list


def test_put_status_rules(alice_client, admin_client) -> None:
    order_id = alice_client.post("/api/orders", BODY, format="json").json()["order_id"]
    url = f"/api/orders/{order_id}/status"
    _problem(admin_client.put(url, {"status": "BANANA"}, format="json"), 400)
    _problem(admin_client.put(url, {"status": "COMPLETED"}, format="json"), 409)
    _problem(admin_client.put(f"/api/orders/{uuid.uuid4()}/status", {"status": "FAILED"}, format="json"), 404)
    response = admin_client.put(url, {"status": "CANCELLED", "reason": "customer called"}, format="json")
    assert response.status_code == 202 and response.json() == {"order_id": order_id, "status": "PENDING"}


def test_idempotency_replay_and_conflict(alice_client, bob_client) -> None:
    first = alice_client.post("/api/orders", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 202
    reordered = {"payment": BODY["payment"], "items": BODY["items"]}
    replay = alice_client.post("/api/orders", reordered, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert (replay.status_code, replay.json()) == (202, first.json())
    assert replay["Location"] == first["Location"]
    assert StoredEvent.objects.filter(event_type="OrderCreated").count() == 1
    other = {**BODY, "items": [{"product_id": "SKU-A", "quantity": 3}]}
    _problem(alice_client.post("/api/orders", other, format="json", HTTP_IDEMPOTENCY_KEY="k-1"), 422)
    # Keys are scoped to the user: bob's k-1 is another key.
    assert (
        bob_client.post("/api/orders", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-1").json() != first.json()
    )


def test_a_duplicate_while_the_first_runs_is_a_409_with_retry_after(alice_client) -> None:
    from orders.idempotency import fingerprint

    IdempotencyRecord.objects.create(user_id="alice", key="k-run", request_hash=fingerprint(BODY))
    response = alice_client.post("/api/orders", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-run")
    _problem(response, 409)
    assert response["Retry-After"] == "1"


def test_a_rejected_request_gives_its_key_back(alice_client) -> None:
    bad = {**BODY, "items": [{"product_id": "SKU-NOPE", "quantity": 1}]}
    _problem(alice_client.post("/api/orders", bad, format="json", HTTP_IDEMPOTENCY_KEY="k-2"), 400)
    assert not IdempotencyRecord.objects.filter(key="k-2").exists()
