"""The Payment aggregate: given events → decision → expected events (no database)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from eventstore.catalogue import from_data, to_data
from payments.domain import (
    AttemptOutcome,
    FailureReason,
    Payment,
    PaymentConflict,
    PaymentStatus,
    payment_id_for,
)

ORDER = "3f0c7d0e-1111-4222-8333-444455556666"


def given(*decisions) -> Payment:
    """A payment after applying each decision's events in turn."""
    payment = Payment(order_id=ORDER)
    for decide in decisions:
        for event in decide(payment):
            payment.apply(event)
    return payment


def requested(payment: Payment, amount: str = "25.00"):
    return payment.request(
        amount=Decimal(amount), method="card", reference="pmref_1", customer_id="alice", command_id="cmd-1"
    )


def attempted(outcome: AttemptOutcome):
    return lambda payment: payment.record_attempt(outcome=outcome)


def captured(payment: Payment):
    return payment.capture()


def test_request_records_a_pending_payment_with_the_order_idempotency_key():
    # when
    events = requested(Payment(order_id=ORDER))
    # then
    assert [event.event_type for event in events] == ["PaymentRequested"]
    assert to_data(events[0])["amount"] == "25.00"
    assert to_data(events[0])["idempotency_key"] == f"order-{ORDER}"
    assert to_data(events[0])["payment_id"] == payment_id_for(ORDER)
    assert given(requested).status == PaymentStatus.PENDING


def test_capture_counts_attempts_and_one_capture():
    payment = given(requested, attempted(AttemptOutcome.TRANSIENT), attempted(AttemptOutcome.CAPTURED))
    events = payment.capture()
    assert events[0].event_type == "PaymentProcessed"
    assert to_data(events[0]) == {
        "order_id": ORDER,
        "payment_id": payment_id_for(ORDER),
        "amount": "25.00",
        "attempts": 2,
    }
    payment.apply(events[0])
    assert (payment.status, payment.attempts, payment.captures) == (PaymentStatus.CAPTURED, 2, 1)


def test_a_captured_payment_cannot_be_requested_again():
    with pytest.raises(PaymentConflict):
        requested(given(requested, captured))


def test_a_running_payment_cannot_be_requested_again():
    with pytest.raises(PaymentConflict):
        requested(given(requested))


def test_decline_and_unavailability_map_to_statuses():
    declined = given(requested, lambda p: p.fail(reason=FailureReason.DECLINED, error="no"))
    failed = given(requested, lambda p: p.fail(reason=FailureReason.UNAVAILABLE, error="down"))
    assert declined.status == PaymentStatus.DECLINED
    assert failed.status == PaymentStatus.FAILED


def test_a_failed_payment_may_be_tried_again():
    payment = given(requested, lambda p: p.fail(reason=FailureReason.UNAVAILABLE, error="down"))
    assert [event.event_type for event in requested(payment)] == ["PaymentRequested"]


def test_timeout_makes_the_outcome_unknown_and_the_ledger_settles_it():
    payment = given(requested, attempted(AttemptOutcome.TIMEOUT), lambda p: p.mark_unknown(error="timeout"))
    assert payment.status == PaymentStatus.UNKNOWN
    payment.apply(payment.capture()[0])
    assert payment.status == PaymentStatus.CAPTURED


def test_nothing_is_decided_once_settled():
    payment = given(requested, captured)
    assert payment.capture() == []
    assert payment.fail(reason=FailureReason.UNAVAILABLE, error="x") == []
    assert payment.record_attempt(outcome=AttemptOutcome.CAPTURED) == []


def refund(amount: str | None, *, strict: bool = True, refund_id: str = "r1"):
    value = None if amount is None else Decimal(amount)
    return lambda p: p.request_refund(
        refund_id=refund_id, amount=value, reason="x", command_id="c", strict=strict
    )


def test_partial_then_full_refund():
    payment = given(requested, captured, refund("10.00"))
    request, amount = payment.next_refund()
    assert amount == Decimal("10.00")
    payment.apply(payment.complete_refund(refund_id=request.refund_id, amount=amount)[0])
    assert (payment.status, payment.refunded) == (PaymentStatus.PARTIALLY_REFUNDED, Decimal("10.00"))

    for event in refund(None, refund_id="r2")(payment):
        payment.apply(event)
    request, amount = payment.next_refund()
    assert amount == Decimal("15.00")
    events = payment.complete_refund(refund_id="r2", amount=amount)
    assert to_data(events[0]) == {
        "order_id": ORDER,
        "payment_id": payment_id_for(ORDER),
        "amount": "15.00",
        "refunded_amount": "25.00",
    }
    payment.apply(events[0])
    assert payment.status == PaymentStatus.REFUNDED


def test_an_operator_cannot_refund_more_than_was_captured():
    with pytest.raises(PaymentConflict):
        refund("25.01")(given(requested, captured))


def test_an_operator_cannot_refund_an_uncaptured_or_running_payment():
    with pytest.raises(PaymentConflict):
        refund(None)(given(requested))
    with pytest.raises(PaymentConflict):
        refund(None)(given(requested, lambda p: p.fail(reason=FailureReason.DECLINED, error="no")))


def test_a_compensation_with_nothing_captured_is_answered_at_once_with_zero():
    events = refund(None, strict=False)(
        given(requested, lambda p: p.fail(reason=FailureReason.DECLINED, error=""))
    )
    assert [event.event_type for event in events] == ["RefundRequested", "PaymentRefunded"]
    assert to_data(events[1])["amount"] == "0.00"


def test_a_compensation_while_the_charge_runs_waits_for_it_and_voids_later_rounds():
    payment = given(requested, refund(None, strict=False))
    assert payment.next_refund() is None  # the outcome is not known yet
    payment.apply(payment.capture()[0])
    request, amount = payment.next_refund()
    assert amount == Decimal("25.00")
    payment.apply(payment.complete_refund(refund_id=request.refund_id, amount=amount)[0])
    assert payment.status == PaymentStatus.REFUNDED
    with pytest.raises(PaymentConflict):
        requested(payment)


def test_a_repeated_process_command_for_a_capture_is_answered_again():
    payment = given(requested, captured)
    assert [event.event_type for event in payment.report()] == ["PaymentProcessed"]
    payment.apply(payment.report()[0])
    assert (payment.status, payment.captures) == (PaymentStatus.CAPTURED, 1)


def test_an_unknown_payment_fails_only_once_no_timed_out_call_can_land():
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    payment = given(requested)
    for event in payment.record_attempt(
        outcome=AttemptOutcome.TIMEOUT, error="no answer", may_land_until=t0 + timedelta(seconds=7)
    ):
        payment.apply(event)
    payment.apply(payment.mark_unknown(error="no answer")[0])
    assert payment.status == PaymentStatus.UNKNOWN
    assert payment.fail(reason=FailureReason.UNAVAILABLE, error="x", now=t0 + timedelta(seconds=6)) == []
    assert payment.fail(reason=FailureReason.UNAVAILABLE, error="x") == []
    # the caller saw every call end, or the calls' limit passed: nothing can land any more
    assert payment.fail(reason=FailureReason.UNAVAILABLE, error="x", calls_ended=True)
    [failed] = payment.fail(reason=FailureReason.UNAVAILABLE, error="x", now=t0 + timedelta(seconds=7))
    payment.apply(failed)
    assert payment.status == PaymentStatus.FAILED
    # ... and a capture found later in the ledger is still recorded as one
    [late] = payment.reconcile_capture()
    payment.apply(late)
    assert (payment.status, payment.captures) == (PaymentStatus.CAPTURED, 1)


def test_reporting_the_outcome_never_starts_a_charge():
    assert [to_data(e)["reason"] for e in Payment(order_id="o-1").report()] == ["PAYMENT_UNAVAILABLE"]
    assert given(requested).report() == []  # running: its runner answers
    declined = given(requested)
    declined.apply(declined.fail(reason=FailureReason.DECLINED, error="no")[0])
    assert [(e.event_type, to_data(e)["reason"]) for e in declined.report()] == [
        ("PaymentFailed", "PAYMENT_DECLINED")
    ]
    assert [e.event_type for e in given(requested, captured).report()] == ["PaymentProcessed"]


def test_a_request_names_its_card_token_by_reference_and_records_the_customer():
    events = requested(Payment(order_id=ORDER))
    data = to_data(events[0])
    assert "token" not in data
    assert (data["method"], data["reference"], data["customer_id"]) == ("card", "pmref_1", "alice")
    payment = given(requested)
    assert (payment.reference, payment.customer_id) == ("pmref_1", "alice")


def test_an_event_written_with_the_token_still_loads_without_keeping_it():
    # PaymentRequested as written before tokens were held apart (the log is never rewritten)
    old = {
        "order_id": ORDER,
        "payment_id": payment_id_for(ORDER),
        "amount": "25.00",
        "method": "card",
        "token": "tok_ok",
        "idempotency_key": f"order-{ORDER}",
        "command_id": "cmd-1",
    }
    payment = Payment.replay(ORDER, [from_data("PaymentRequested", 1, old)])  # type: ignore[list-item]
    assert (payment.status, payment.amount, payment.reference, payment.customer_id) == (
        PaymentStatus.PENDING,
        Decimal("25.00"),
        "",
        "",
    )
    assert "tok_ok" not in repr(payment)


def test_a_new_round_without_a_customer_keeps_the_known_one():
    first = given(requested, lambda p: p.fail(reason=FailureReason.DECLINED, error="no", calls_ended=True))
    events = first.request(
        amount=Decimal("25.00"), method="card", reference="pmref_2", customer_id="", command_id=""
    )
    first.apply(events[0])
    assert (first.reference, first.customer_id, first.status) == ("pmref_2", "alice", PaymentStatus.PENDING)


def test_new_references_are_opaque_and_distinct():
    from payments.domain import new_reference

    references = {new_reference() for _ in range(100)}
    assert len(references) == 100
    assert all(r.startswith("pmref_") and "tok" not in r[6:] for r in references)
