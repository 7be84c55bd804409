"""ProcessPayment and RefundPayment as the saga sends them, through eventstore.handling (real PostgreSQL)."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.db import transaction

from eventstore.handling import handle
from eventstore.messages import Message, utc_iso
from eventstore.models import OutboxMessage
from payments.handlers import load_payment, request_refund
from payments.models import GatewayCharge, GatewayRefund
from payments.refunds import run_refunds

from .conftest import ledger_entry, stream_types

pytestmark = pytest.mark.django_db(transaction=True)


def command(name: str, order_id: str, data: dict) -> Message:
    from django.utils import timezone

    return Message(
        message_id=str(uuid.uuid4()),
        kind="command",
        type=name,
        aggregate_type="payment",
        aggregate_id=f"payment-{order_id}",
        data={"order_id": order_id, **data},
        occurred_at=utc_iso(timezone.now()),
        correlation_id=order_id,
        causation_id=str(uuid.uuid4()),
        source="payments",
    )


def process(order_id: str, token: str = "tok_ok", amount: str = "40.00") -> Message:  # noqa: S107
    return command("ProcessPayment", order_id, {"amount": amount, "method": "card", "token": token})


def refund(order_id: str, amount: str | None = None) -> Message:
    return command("RefundPayment", order_id, {"amount": amount, "reason": "CANCELLED"})


def published(order_id: str, event_type: str) -> list[dict]:
    rows = OutboxMessage.objects.filter(routing_key=f"payments.{event_type}").order_by("id")
    return [row.body for row in rows if row.body["correlation_id"] == order_id]


def test_process_payment_charges_after_commit_and_publishes_the_answer(new_order_id):
    order_id = new_order_id()
    message = process(order_id)
    assert handle("payments", message) is True
    [answer] = published(order_id, "PaymentProcessed")
    assert answer["data"]["amount"] == "40.00" and answer["data"]["attempts"] == 1
    assert answer["causation_id"] == message.message_id
    # a redelivery of the same command has no second effect
    assert handle("payments", message) is False
    assert ledger_entry(order_id).charge_calls == 1


def test_a_declined_payment_is_answered_with_payment_failed(new_order_id):
    order_id = new_order_id()
    handle("payments", process(order_id, token="tok_declined"))
    [answer] = published(order_id, "PaymentFailed")
    assert answer["data"]["reason"] == "PAYMENT_DECLINED"


def test_full_refund_after_capture(new_order_id):
    order_id = new_order_id()
    handle("payments", process(order_id))
    handle("payments", refund(order_id))
    [answer] = published(order_id, "PaymentRefunded")
    assert answer["data"]["amount"] == "40.00" and answer["data"]["refunded_amount"] == "40.00"
    assert load_payment(order_id).status == "REFUNDED"
    assert ledger_entry(order_id).refunded_amount == Decimal("40.00")


def test_refund_with_nothing_captured_answers_zero(new_order_id):
    order_id = new_order_id()
    handle("payments", refund(order_id))
    [answer] = published(order_id, "PaymentRefunded")
    assert answer["data"]["amount"] == "0.00"
    assert GatewayRefund.objects.count() == 0
    # a late ProcessPayment of a compensated order is never charged
    handle("payments", process(order_id))
    assert ledger_entry(order_id) is None


def test_a_refund_that_arrives_while_the_charge_runs_is_paid_once_the_capture_lands(new_order_id, requested):
    # given: the charge is requested but has not run yet, and the saga compensates meanwhile
    order_id = requested("tok_ok", amount="40.00")
    handle("payments", refund(order_id))
    assert published(order_id, "PaymentRefunded") == []
    # when: the charge runs
    from payments.charging import run_charge

    run_charge(order_id=order_id)
    # then: captured, then refunded in full
    assert [b["type"] for b in published(order_id, "PaymentProcessed")] == ["PaymentProcessed"]
    [answer] = published(order_id, "PaymentRefunded")
    assert answer["data"]["amount"] == "40.00"
    assert load_payment(order_id).status == "REFUNDED"


def test_partial_refunds_then_the_rest(new_order_id):
    order_id = new_order_id()
    handle("payments", process(order_id))
    handle("payments", refund(order_id, "15.00"))
    assert load_payment(order_id).status == "PARTIALLY_REFUNDED"
    handle("payments", refund(order_id))
    amounts = [b["data"]["amount"] for b in published(order_id, "PaymentRefunded")]
    assert amounts == ["15.00", "25.00"]
    assert load_payment(order_id).status == "REFUNDED"
    assert GatewayCharge.objects.get(idempotency_key=f"order-{order_id}").refunded_amount == Decimal("40.00")


def test_a_repeated_refund_run_pays_once(new_order_id, requested):
    order_id = requested("tok_ok", amount="40.00")
    from payments.charging import run_charge

    run_charge(order_id=order_id)
    with transaction.atomic():
        request_refund(order_id=order_id, amount=None, reason="x", command_id="c", strict=True)
    run_refunds(order_id=order_id)
    run_refunds(order_id=order_id)
    assert GatewayRefund.objects.filter(idempotency_key=f"order-{order_id}").count() == 1
    assert stream_types(order_id).count("PaymentRefunded") == 1


def test_an_invalid_command_is_refused_and_changes_nothing(new_order_id):
    order_id = new_order_id()
    with pytest.raises(ValueError):
        handle("payments", process(order_id, amount="-1"))
    assert stream_types(order_id) == []
