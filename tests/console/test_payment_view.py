"""The payment part of an order's console: the payment, its charge attempts, the gateway ledger's
entry and the reconciliation's verdict, with real calls to the simulator's ledger."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from payments.domain import idempotency_key_for
from payments.simulator import SimulatedGateway

# The gateway refuses to be called inside a transaction: these tests commit.
pytestmark = pytest.mark.django_db(transaction=True)


def test_a_captured_payment_agrees_with_the_ledger_until_the_gateway_refunds_behind_our_back(
    admin_client, placed_order, settings
) -> None:
    settings.PAYMENT_BREAKER_PREFIX = f"test:console:{uuid.uuid4().hex}"
    order_id = placed_order()
    charge = {"order_id": order_id, "amount": "28.00", "method": "card", "token": "tok_ok"}
    assert admin_client.post("/api/payments/process", charge, format="json").status_code == 200

    page = admin_client.get(f"/api/admin/orders/{order_id}").json()
    payment = page["payment"]
    assert payment["payment"]["status"] == "CAPTURED" and payment["payment"]["captures"] == 1
    assert [(a["attempt"], a["outcome"]) for a in payment["attempts"]] == [(1, "captured")]
    ledger = payment["ledger"]
    assert (ledger["idempotency_key"], ledger["status"], ledger["amount"]) == (
        idempotency_key_for(order_id),
        "CAPTURED",
        "28.00",
    )
    assert ledger["charge_calls"] == 1 and ledger["refunds"] == []
    assert payment["reconciliation"] == "agrees"
    requested = next(m for m in page["timeline"] if m["type"] == "PaymentRequested")
    assert "token" not in requested["data"] and requested["data"]["reference"].startswith("pmref_")

    # Someone refunds at the gateway directly: the ledger and the payment now disagree.
    SimulatedGateway().refund(
        idempotency_key=idempotency_key_for(order_id), refund_key="by-hand", amount=Decimal("5.00")
    )
    payment = admin_client.get(f"/api/admin/orders/{order_id}").json()["payment"]
    assert payment["ledger"]["refunded_amount"] == "5.00"
    assert [r["refund_key"] for r in payment["ledger"]["refunds"]] == ["by-hand"]
    assert payment["reconciliation"] == "refund_mismatch"


def test_before_any_payment_there_is_none(admin_client, placed_order) -> None:
    page = admin_client.get(f"/api/admin/orders/{placed_order()}").json()
    assert page["payment"] is None
