"""Reconciliation with the gateway's ledger: disagreements found, late captures corrected, once."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from payments.charging import run_charge
from payments.handlers import load_payment
from payments.models import GatewayCharge, PaymentRecord
from payments.reconciliation import reconcile_with_gateway

from .conftest import ledger_entry, stream_types

pytestmark = pytest.mark.django_db(transaction=True)


def _ledger(order_id: str, *, status: str, amount: str = "25.00", refunded: str = "0.00") -> None:
    now = timezone.now()
    GatewayCharge.objects.update_or_create(
        idempotency_key=f"order-{order_id}",
        defaults={
            "token": "tok_ok",
            "amount": Decimal(amount),
            "status": status,
            "charge_calls": 1,
            "refunded_amount": Decimal(refunded),
            "created_at": now,
            "updated_at": now,
        },
    )


def test_a_capture_the_payment_never_heard_of_becomes_payment_processed_once(requested) -> None:
    order_id = requested(token="tok_gateway_down")
    run_charge(order_id=order_id)
    assert load_payment(order_id).status == "FAILED"
    _ledger(order_id, status="CAPTURED")  # the gateway took it after all
    assert reconcile_with_gateway(window=600) == {"late_capture": 1}
    payment = load_payment(order_id)
    assert (payment.status, payment.captures) == ("CAPTURED", 1)
    assert stream_types(order_id)[-1] == "PaymentProcessed"
    assert reconcile_with_gateway(window=600) == {}, "a corrected payment is not corrected twice"


def test_disagreements_that_need_a_person_are_counted_not_corrected(requested) -> None:
    captured = requested()
    run_charge(order_id=captured)
    GatewayCharge.objects.filter(idempotency_key=f"order-{captured}").update(status="FAILED")
    refunded = requested()
    run_charge(order_id=refunded)
    GatewayCharge.objects.filter(idempotency_key=f"order-{refunded}").update(refunded_amount=Decimal("3.00"))
    found = reconcile_with_gateway(window=600)
    assert found == {"captured_unknown_to_ledger": 1, "refund_mismatch": 1}
    assert load_payment(captured).status == "CAPTURED" and load_payment(refunded).refunded == Decimal("0.00")


def test_running_payments_and_payments_outside_the_window_are_left_alone(requested) -> None:
    running = requested(token="tok_gateway_down")  # PENDING: its runner decides
    _ledger(running, status="CAPTURED")
    old = requested(token="tok_gateway_down")
    run_charge(order_id=old)
    _ledger(old, status="CAPTURED")
    PaymentRecord.objects.filter(order_id=old).update(updated_at=timezone.now() - timedelta(hours=2))
    assert reconcile_with_gateway(window=3600) == {}
    assert ledger_entry(old).status == "CAPTURED" and load_payment(old).status == "FAILED"
    assert reconcile_with_gateway(window=3 * 3600) == {"late_capture": 1}
