"""The payments API (docs/api.md "Endpoints"): statuses, roles, ownership, strict input, problems."""

from __future__ import annotations

import uuid

import pytest
from django.db import transaction

from eventstore.store import append
from payments.charging import run_charge
from payments.handlers import request_refund
from tests.fixtures.events import untyped_event

pytestmark = pytest.mark.django_db(transaction=True)


def order_of(customer_id: str) -> str:
    """An order of ``customer_id`` in the event store, as the orders context records it."""
    order_id = str(uuid.uuid4())
    data = {
        "order_id": order_id,
        "customer_id": customer_id,
        "items": [{"product_id": "SKU-0001", "product_name": "Thing", "quantity": 1, "price": "40.00"}],
        "total_amount": "40.00",
        "payment": {"method": "card"},
    }
    with transaction.atomic():
        append(
            context="orders",
            aggregate_type="order",
            aggregate_id=order_id,
            expected_version=0,
            events=[untyped_event("OrderCreated", data)],
            correlation_id=order_id,
        )
    return order_id


@pytest.fixture
def paid_order(requested) -> str:
    """alice's order, captured."""
    order_id = order_of("alice")
    requested("tok_ok", amount="40.00", order_id=order_id, customer_id="alice")
    run_charge(order_id=order_id)
    return order_id


def test_owner_and_admin_see_the_payment(paid_order, alice_client, admin_client):
    for client in (alice_client, admin_client):
        response = client.get(f"/api/payments/{paid_order}")
        assert response.status_code == 200
        body = response.json()
        assert body == {
            "payment_id": body["payment_id"],
            "order_id": paid_order,
            "status": "CAPTURED",
            "amount": "40.00",
            "refunded_amount": "0.00",
            "attempts": 1,
            "captures": 1,
        }


def test_another_users_payment_is_not_found(paid_order, bob_client):
    response = bob_client.get(f"/api/payments/{paid_order}")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/problem+json")


def test_no_payment_before_the_saga_reaches_it(alice_client, demo_users):
    order_id = order_of("alice")
    assert alice_client.get(f"/api/payments/{order_id}").status_code == 404
    assert alice_client.get("/api/payments/not-a-uuid").status_code == 404


def test_anonymous_is_401(api_client, paid_order):
    assert api_client.get(f"/api/payments/{paid_order}").status_code == 401


def test_process_is_for_admins(alice_client, demo_users):
    order_id = order_of("alice")
    body = {"order_id": order_id, "amount": "40.00", "method": "card", "token": "tok_ok"}
    assert alice_client.post("/api/payments/process", body).status_code == 403


def test_admin_processes_then_a_second_process_is_409(admin_client):
    order_id = order_of("alice")
    body = {"order_id": order_id, "amount": "40.00", "method": "card", "token": "tok_flaky"}
    response = admin_client.post("/api/payments/process", body)
    assert response.status_code == 200
    assert response.json()["status"] == "CAPTURED" and response.json()["attempts"] == 2
    again = admin_client.post("/api/payments/process", body)
    assert again.status_code == 409
    assert again.json()["status"] == 409


def test_admin_process_of_an_unknown_order_is_404(admin_client):
    body = {"order_id": str(uuid.uuid4()), "amount": "40.00", "method": "card", "token": "tok_ok"}
    assert admin_client.post("/api/payments/process", body).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"order_id": "nope", "amount": "1.00", "method": "card", "token": "tok_ok"},
        {"order_id": "ORDER", "amount": "1.001", "method": "card", "token": "tok_ok"},
        {"order_id": "ORDER", "amount": "0.00", "method": "card", "token": "tok_ok"},
        {"order_id": "ORDER", "amount": "NaN", "method": "card", "token": "tok_ok"},
        {"order_id": "ORDER", "amount": "1.00", "method": "card", "token": "tok\u0000ok"},
        {"order_id": "ORDER", "amount": "1.00", "method": "card", "token": "tok_ok", "extra": 1},
        [1, 2],
    ],
)
def test_bad_process_input_is_400_and_changes_nothing(admin_client, body):
    order_id = order_of("alice")
    if isinstance(body, dict) and body.get("order_id") == "ORDER":
        body = {**body, "order_id": order_id}
    response = admin_client.post("/api/payments/process", body, format="json")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/problem+json")
    assert response.json()["errors"]
    assert admin_client.get(f"/api/payments/{order_id}").status_code == 404


def test_refunds_partial_full_and_over(paid_order, admin_client):
    partial = admin_client.post("/api/payments/refund", {"order_id": paid_order, "amount": "10.00"})
    assert partial.status_code == 200
    assert (partial.json()["status"], partial.json()["refunded_amount"]) == ("PARTIALLY_REFUNDED", "10.00")
    over = admin_client.post("/api/payments/refund", {"order_id": paid_order, "amount": "30.01"})
    assert over.status_code == 409
    rest = admin_client.post("/api/payments/refund", {"order_id": paid_order})
    assert rest.status_code == 200
    assert (rest.json()["status"], rest.json()["refunded_amount"]) == ("REFUNDED", "40.00")
    assert admin_client.post("/api/payments/refund", {"order_id": paid_order}).status_code == 409


def test_refund_is_for_admins_and_needs_a_payment(paid_order, alice_client, admin_client):
    assert alice_client.post("/api/payments/refund", {"order_id": paid_order}).status_code == 403
    assert admin_client.post("/api/payments/refund", {"order_id": str(uuid.uuid4())}).status_code == 404
    assert (
        admin_client.post("/api/payments/refund", {"order_id": paid_order, "amount": "-5"}).status_code == 400
    )


def test_payments_requested_before_owners_were_recorded_learn_them_from_the_sagas(
    requested, alice_client, bob_client
):
    """Migration ``payments 0002`` fills in the owner of older payments from the saga rows."""
    import importlib
    from types import SimpleNamespace

    from django.apps import apps
    from django.db import connection
    from django.utils import timezone

    from sagas.models import SagaInstance

    order_id = order_of("alice")
    requested("tok_ok", amount="40.00", order_id=order_id)  # no owner recorded
    run_charge(order_id=order_id)
    assert alice_client.get(f"/api/payments/{order_id}").status_code == 404
    SagaInstance.objects.create(
        order_id=order_id,
        customer_id="alice",
        state="COMPLETED",
        deadline=timezone.now(),
        items=[],
        amount="40.00",
        payment_method="card",
        payment_token="",
    )

    migration = importlib.import_module("payments.migrations.0002_payment_secret_and_owner")
    migration.record_owners_from_sagas(apps, SimpleNamespace(connection=connection))

    assert alice_client.get(f"/api/payments/{order_id}").status_code == 200
    assert bob_client.get(f"/api/payments/{order_id}").status_code == 404
    # a later event of the payment keeps that owner (its aggregate does not know it: "")
    with transaction.atomic():
        request_refund(order_id=order_id, amount=None, reason="test", command_id="", strict=True)
    assert alice_client.get(f"/api/payments/{order_id}").status_code == 200
