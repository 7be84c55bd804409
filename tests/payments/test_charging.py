"""Each card token through the real charge path: simulator ledger on PostgreSQL, breaker on Redis."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection, transaction

from payments.charging import resume_stalled_payments, run_charge
from payments.handlers import load_payment
from payments.models import GatewayCharge, PaymentRecord
from payments.public import payment_status

from .conftest import ledger_entry, stream_types

pytestmark = pytest.mark.django_db(transaction=True)


def test_tok_ok_captures_once(requested):
    order_id = requested("tok_ok")
    payment = run_charge(order_id=order_id)
    assert (payment.status, payment.attempts, payment.captures) == ("CAPTURED", 1, 1)
    assert ledger_entry(order_id).status == "CAPTURED"
    assert stream_types(order_id) == ["PaymentRequested", "PaymentAttempted", "PaymentProcessed"]
    body = payment_status(order_id)
    assert body["status"] == "CAPTURED" and body["amount"] == "25.00" and body["captures"] == 1


def test_tok_flaky_captures_on_the_second_attempt(requested):
    order_id = requested("tok_flaky")
    payment = run_charge(order_id=order_id)
    assert (payment.status, payment.attempts, payment.captures) == ("CAPTURED", 2, 1)
    assert ledger_entry(order_id).charge_calls == 2


def test_tok_declined_is_not_retried(requested):
    order_id = requested("tok_declined")
    payment = run_charge(order_id=order_id)
    assert (payment.status, payment.attempts, payment.captures) == ("DECLINED", 1, 0)
    assert ledger_entry(order_id).charge_calls == 1
    failed = next(e for e in _events(order_id) if e.type == "PaymentFailed")
    assert failed.data["reason"] == "PAYMENT_DECLINED" and failed.data["attempts"] == 1


def test_tok_gateway_down_fails_unavailable_after_three_attempts(requested):
    order_id = requested("tok_gateway_down")
    payment = run_charge(order_id=order_id)
    assert (payment.status, payment.attempts, payment.captures) == ("FAILED", 3, 0)
    assert ledger_entry(order_id).status != "CAPTURED"
    failed = next(e for e in _events(order_id) if e.type == "PaymentFailed")
    assert failed.data["reason"] == "PAYMENT_UNAVAILABLE" and failed.data["attempts"] == 3
    assert failed.correlation_id == order_id


def test_tok_slow_is_reconciled_from_the_ledger_with_exactly_one_capture(requested, settings):
    settings.PAYMENT_TIMEOUT = 0.3
    order_id = requested("tok_slow")
    payment = run_charge(order_id=order_id)
    assert (payment.status, payment.captures) == ("CAPTURED", 1)
    assert stream_types(order_id)[:4] == [
        "PaymentRequested",
        "PaymentAttempted",
        "PaymentOutcomeUnknown",
        "PaymentProcessed",
    ]
    assert GatewayCharge.objects.filter(idempotency_key=f"order-{order_id}", status="CAPTURED").count() == 1
    # running it again (a redelivery, the resume task) changes nothing and charges nothing
    run_charge(order_id=order_id)
    assert ledger_entry(order_id).charge_calls == 1
    assert stream_types(order_id).count("PaymentProcessed") == 1


def test_open_breaker_fails_fast_without_calling_the_gateway(requested):
    # given: two unavailable payments (6 failed calls) open the shared breaker
    for _ in range(2):
        run_charge(order_id=requested("tok_gateway_down"))
    # when
    order_id = requested("tok_ok")
    payment = run_charge(order_id=order_id)
    # then: failed unavailable, and the gateway never saw the charge
    assert (payment.status, payment.attempts) == ("FAILED", 0)
    assert ledger_entry(order_id) is None
    assert (
        next(e for e in _events(order_id) if e.type == "PaymentFailed").data["reason"]
        == "PAYMENT_UNAVAILABLE"
    )


class _HoldingGateway:
    """The simulator, each charge held until every runner is either charging too or has returned.

    With the claim, one runner charges and the others return at once, so it goes on at once;
    without it, every runner reaches the gateway and they all overlap, whatever the scheduling.
    """

    def __init__(self, runners: int) -> None:
        from payments.simulator import SimulatedGateway

        self._gateway = SimulatedGateway()
        self.name = self._gateway.name
        self._runners = runners
        self._cond = threading.Condition()
        self.charging = 0
        self.returned = 0

    def charge(self, **call: Any) -> Any:
        with self._cond:
            self.charging += 1
            self._cond.notify_all()
            self._cond.wait_for(lambda: self.charging + self.returned >= self._runners, timeout=20)
        return self._gateway.charge(**call)

    def status(self, **call: Any) -> Any:
        return self._gateway.status(**call)

    def refund(self, **call: Any) -> Any:
        return self._gateway.refund(**call)

    def runner_returned(self) -> None:
        with self._cond:
            self.returned += 1
            self._cond.notify_all()


RUNNERS = 6


def test_concurrent_runners_one_charges_and_captures_once(requested, settings):
    settings.PAYMENT_TIMEOUT = 30  # the held charge never times out
    order_id = requested("tok_ok")
    gateway = _HoldingGateway(RUNNERS)
    start = threading.Barrier(RUNNERS)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            start.wait(timeout=30)
            run_charge(order_id=order_id, gateway=gateway)
        except BaseException as exc:
            errors.append(exc)
        finally:
            gateway.runner_returned()
            connection.close()

    # when: every runner starts the charge at the same instant, each on its own connection
    threads = [threading.Thread(target=run) for _ in range(RUNNERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []

    # then: the claim let exactly one runner call the gateway and record its attempt ...
    assert gateway.charging == 1
    assert ledger_entry(order_id).charge_calls == 1
    assert stream_types(order_id).count("PaymentAttempted") == 1
    # ... and there is exactly one capture, in the ledger and in the payment
    assert GatewayCharge.objects.filter(idempotency_key=f"order-{order_id}", status="CAPTURED").count() == 1
    payment = load_payment(order_id)
    assert (payment.status, payment.attempts, payment.captures) == ("CAPTURED", 1, 1)
    assert stream_types(order_id).count("PaymentProcessed") == 1
    assert payment_status(order_id)["captures"] == 1
    # and the claim was released
    assert PaymentRecord.objects.get(pk=order_id).claimed_until is None


def test_a_crash_left_pending_is_resumed_without_a_second_capture(requested):
    # given: the gateway captured, then the process died before recording it
    from payments.simulator import SimulatedGateway

    order_id = requested("tok_ok")
    SimulatedGateway().charge(
        idempotency_key=f"order-{order_id}", amount=load_payment(order_id).amount, token="tok_ok"
    )
    # when: the periodic task runs
    resumed = resume_stalled_payments(older_than=0)
    # then
    assert order_id in resumed
    payment = load_payment(order_id)
    assert (payment.status, payment.captures) == ("CAPTURED", 1)
    assert GatewayCharge.objects.filter(idempotency_key=f"order-{order_id}").count() == 1


def test_a_crash_left_pending_is_captured_not_failed_when_the_breaker_is_open_on_resume(requested):
    # given: the gateway captured, then the process died before recording it ...
    from payments.simulator import SimulatedGateway

    order_id = requested("tok_ok")
    SimulatedGateway().charge(
        idempotency_key=f"order-{order_id}", amount=load_payment(order_id).amount, token="tok_ok"
    )
    # ... and by the time the payment is resumed the breaker is open (found by the chaos suite)
    for _ in range(2):
        run_charge(order_id=requested("tok_gateway_down"))
    # when
    payment = run_charge(order_id=order_id)
    # then: the ledger decides, not the breaker: the capture is recorded, never failed and kept
    assert (payment.status, payment.captures) == ("CAPTURED", 1)
    assert "PaymentFailed" not in stream_types(order_id)


def test_the_gateway_is_never_called_inside_a_transaction(requested):
    order_id = requested("tok_ok")
    with pytest.raises(RuntimeError), transaction.atomic():
        run_charge(order_id=order_id)
    assert ledger_entry(order_id) is None


def _events(order_id: str):
    from eventstore.store import load_stream

    return load_stream(f"payment-{order_id}")
