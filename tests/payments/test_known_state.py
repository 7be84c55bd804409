"""The charge runner decides on the state it already knows, and reloads whenever the stream moved."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from payments.charging import run_charge
from payments.gateway import GatewayError
from payments.handlers import load_payment, request_payment, request_refund
from payments.models import GatewayRefund, PaymentRecord
from payments.recorder import claim_charge
from payments.simulator import SimulatedGateway

from .conftest import ledger_entry, stream_types

pytestmark = pytest.mark.django_db(transaction=True)


def _requested(order_id: str, token: str = "tok_ok"):  # noqa: S107 - a test card token
    with transaction.atomic():
        payment, must_run = request_payment(
            order_id=order_id,
            amount=Decimal("30.00"),
            method="card",
            token=token,
            customer_id="",
            command_id=str(uuid.uuid4()),
            strict=False,
        )
    assert must_run
    return payment


def _ask_refund(order_id: str) -> None:
    with transaction.atomic():
        request_refund(
            order_id=order_id, amount=None, reason="CANCELLED", command_id=str(uuid.uuid4()), strict=False
        )


def _claimed_until(order_id: str):
    return PaymentRecord.objects.get(pk=order_id).claimed_until


@pytest.mark.parametrize(
    ("token", "status"),
    [
        ("tok_ok", "CAPTURED"),
        ("tok_declined", "DECLINED"),
        ("tok_gateway_down", "FAILED"),
        ("tok_flaky", "CAPTURED"),
    ],
)
def test_the_state_handed_over_is_charged_and_the_claim_released(new_order_id, token, status):
    order_id = new_order_id()
    payment = _requested(order_id, token)
    result = run_charge(order_id=order_id, payment=payment)
    assert result.status == status
    assert load_payment(order_id) == result
    assert _claimed_until(order_id) is None
    row = PaymentRecord.objects.get(pk=order_id)
    assert (row.status, row.version, row.attempts) == (status, result.version, result.attempts)
    assert payment.status == "PENDING"  # the caller's object is not changed


def test_a_handed_over_state_that_is_stale_is_reloaded(new_order_id):
    # given: the state handed over, then a compensation asked for a refund before the charge ran
    order_id = new_order_id()
    stale = _requested(order_id)
    _ask_refund(order_id)
    # when
    result = run_charge(order_id=order_id, payment=stale)
    # then: captured once, and refunded since the refund was waiting
    assert (result.status, result.captures, result.refunded) == ("REFUNDED", 1, Decimal("30.00"))
    assert ledger_entry(order_id).charge_calls == 1
    assert GatewayRefund.objects.filter(idempotency_key=f"order-{order_id}").count() == 1
    assert _claimed_until(order_id) is None


class _RefundAskedDuringCharge(SimulatedGateway):
    """The saga compensates while the gateway call is under way (another thread, another transaction)."""

    def __init__(self, order_id: str) -> None:
        self.order_id = order_id

    def charge(self, **kwargs):
        worker = threading.Thread(target=self._compensate)
        worker.start()
        worker.join()
        return super().charge(**kwargs)

    def _compensate(self) -> None:
        from django.db import connection

        try:
            _ask_refund(self.order_id)
        finally:
            connection.close()


def test_a_refund_asked_while_the_gateway_answers_is_seen_and_paid(new_order_id):
    # given
    order_id = new_order_id()
    payment = _requested(order_id)
    # when: the runner's known state goes stale during the call
    result = run_charge(order_id=order_id, payment=payment, gateway=_RefundAskedDuringCharge(order_id))
    # then: the outcome was decided again on the fresh state, and the waiting refund was paid
    assert stream_types(order_id) == [
        "PaymentRequested",
        "RefundRequested",
        "PaymentAttempted",
        "PaymentProcessed",
        "PaymentRefunded",
    ]
    assert (result.status, result.captures) == ("REFUNDED", 1)
    assert load_payment(order_id) == result
    assert ledger_entry(order_id).charge_calls == 1
    assert _claimed_until(order_id) is None


def test_a_payment_left_unknown_keeps_no_claim(new_order_id, monkeypatch):
    # given: the call times out and the ledger cannot be asked
    order_id = new_order_id()
    payment = _requested(order_id, "tok_slow")

    def unreachable(self, **kwargs):
        raise GatewayError("ledger down")

    monkeypatch.setattr(SimulatedGateway, "status", unreachable)
    result = run_charge(order_id=order_id, payment=payment, timeout=0.2)
    # then: UNKNOWN for the resume task, which may take it at once
    assert result.status == "UNKNOWN"
    assert _claimed_until(order_id) is None


def test_a_claimed_payment_is_not_charged_by_a_second_runner(new_order_id):
    order_id = new_order_id()
    payment = _requested(order_id)
    now = timezone.now()
    claimed = claim_charge(order_id, until=now + timedelta(seconds=60), now=now)
    assert claimed is not None and claimed[0] == payment.version
    assert run_charge(order_id=order_id, payment=payment).status == "PENDING"
    assert ledger_entry(order_id) is None
    assert claim_charge(order_id, until=now + timedelta(seconds=60), now=timezone.now()) is None
