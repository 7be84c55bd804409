"""Saga rules: given a saga state → answer or request → expected effects (no database).

A command changes nothing: its effects end with the saga's change of state (``Changed``), which
:func:`_applied` applies as the handler does, handing back the other effects.
"""

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from eventstore.catalogue import Event
from sagas import domain
from sagas.domain import Changed, OrderEffect, Saga, SagaRuleViolation, Send, Timing
from sagas.events import SagaManuallyFailed, SagaStepRetried, SagaStepTimedOut
from sagas.handlers import ANSWERS

ORDER_ID = "6f1c2f8e-0000-4000-8000-000000000002"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
TIMING = Timing(saga_timeout=300, step_timeout=10, step_retries=2)
ITEMS = [{"product_id": "SKU-1", "product_name": "Widget", "quantity": 2, "price": "5.00"}]


def _started() -> tuple[Saga, list[domain.Effect]]:
    return Saga.start(
        order_id=ORDER_ID,
        items=ITEMS,
        amount="10.00",
        payment_method="card",
        payment_token="tok_ok",
        now=T0,
        timing=TIMING,
        customer_id="alice",
    )


def _applied(saga: Saga, effects: list[domain.Effect]) -> list[domain.Effect]:
    """Apply a command's change of state (as the handler does); the other effects, in order."""
    for effect in effects:
        saga.apply(effect)
    return [effect for effect in effects if not isinstance(effect, Changed)]


def _sent(effects: list[domain.Effect]) -> list[str]:
    return [e.command for e in effects if isinstance(e, Send)]


def _order(effects: list[domain.Effect]) -> list[OrderEffect]:
    return [e for e in effects if isinstance(e, OrderEffect)]


def _cause(saga: Saga, message_type: str) -> str:
    """The last command the saga sent that ``message_type`` answers ("" if none)."""
    step = domain.ANSWER_STEPS[ANSWERS[message_type]]
    steps = (domain.AWAIT_PAYMENT, step) if step == domain.PAY else (step,)
    for candidate in steps:
        if saga.commands.get(candidate):
            return saga.commands[candidate][-1]
    return ""


def _answer(
    saga: Saga, message_type: str, at: datetime = T0, cause: str | None = None, **data: object
) -> list[domain.Effect]:
    return _applied(
        saga,
        saga.on_answer(
            answer=ANSWERS[message_type],
            event_type=message_type,
            data={"order_id": ORDER_ID, **data},
            causation_id=_cause(saga, message_type) if cause is None else cause,
            now=at,
            timing=TIMING,
        ),
    )


def _paying() -> Saga:
    saga, _ = _started()
    _answer(saga, "InventoryReserved", expires_at="2026-01-01T00:05:00Z")
    return saga


def _completed() -> Saga:
    saga = _paying()
    _answer(saga, "PaymentProcessed")
    _answer(saga, "InventoryConfirmed")
    return saga


def test_start_records_the_saga_and_asks_for_a_reservation_until_the_deadline() -> None:
    saga, effects = _started()
    assert (saga.state, saga.step, saga.expiry, saga.deadline) == (
        "STARTED",
        "RESERVE_INVENTORY",
        T0 + timedelta(seconds=300),
        T0 + timedelta(seconds=TIMING.resend_after),  # the next moment to act: send it again
    )
    assert isinstance(effects[0], Event) and effects[0].event_type == "SagaStarted"
    [reserve] = [e for e in effects if isinstance(e, Send)]
    assert reserve.data == {
        "order_id": ORDER_ID,
        "items": [{"product_id": "SKU-1", "quantity": 2}],
        "expires_at": "2026-01-01T00:05:00Z",
    }


def test_happy_path_reaches_completed_and_completes_the_order() -> None:
    saga, _ = _started()
    effects = _answer(saga, "InventoryReserved", expires_at="2026-01-01T00:05:00Z")
    assert _sent(effects) == ["ProcessPayment"]
    assert [e.status for e in _order(effects)] == ["INVENTORY_RESERVED", "PAYMENT_PROCESSING"]
    assert (saga.state, saga.step) == ("PAYMENT_PROCESSING", "PROCESS_PAYMENT")
    pay = next(e for e in effects if isinstance(e, Send))
    assert pay.data == {
        "order_id": ORDER_ID,
        "customer_id": "alice",
        "amount": "10.00",
        "method": "card",
        "token": "tok_ok",
    }
    assert _sent(_answer(saga, "PaymentProcessed")) == ["ConfirmInventory"]
    effects = _answer(saga, "InventoryConfirmed")
    assert saga.state == "COMPLETED" and saga.step is None
    assert _order(effects) == [OrderEffect("complete")]
    assert saga.summary()["deadline"] is None


def _only_ignored(effects: list[domain.Effect]) -> bool:
    return all(isinstance(e, Event) and e.event_type == "SagaAnswerIgnored" for e in effects)


def test_duplicate_answers_change_nothing() -> None:
    saga = _paying()
    reserve_id = "an-answered-reserve"
    assert _only_ignored(_answer(saga, "InventoryReserved", cause=reserve_id))
    pay_id = _cause(saga, "PaymentProcessed")
    _answer(saga, "PaymentProcessed")
    before = (saga.state, saga.step, dict(saga.commands))
    effects = _answer(saga, "PaymentProcessed", cause=pay_id)
    assert _only_ignored(effects) and len(effects) == 1
    assert (saga.state, saga.step, dict(saga.commands)) == before


def test_deadline_never_outlives_the_reservation() -> None:
    saga, _ = _started()
    _answer(saga, "InventoryReserved", at=T0 + timedelta(seconds=100), expires_at="2026-01-01T00:05:00Z")
    assert saga.expiry == datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    assert saga.deadline <= saga.expiry


def test_out_of_stock_fails_without_compensation() -> None:
    saga, _ = _started()
    effects = _answer(saga, "InventoryReservationFailed", reason="OUT_OF_STOCK", shortages=[])
    assert saga.state == "FAILED"
    assert _sent(effects) == []
    assert _order(effects) == [OrderEffect("fail", reason="OUT_OF_STOCK")]


@pytest.mark.parametrize("reason", ["PAYMENT_DECLINED", "PAYMENT_UNAVAILABLE"])
def test_payment_failure_releases_then_fails_the_order(reason: str) -> None:
    saga = _paying()
    effects = _answer(saga, "PaymentFailed", reason=reason)
    assert (saga.state, saga.step, saga.pending) == (
        "COMPENSATING",
        "RELEASE_INVENTORY",
        ["RELEASE_INVENTORY"],
    )
    assert _sent(effects) == ["ReleaseInventory"] and _order(effects) == []
    effects = _answer(saga, "InventoryReleased", items=[], reason=reason, restocked=False)
    assert saga.state == "COMPENSATED"
    assert _order(effects) == [OrderEffect("fail", reason=reason)]


def test_cancel_before_payment_releases_and_ends_cancelled() -> None:
    saga, _ = _started()
    effects = _applied(saga, saga.cancel(by="alice", reason="no longer needed", now=T0, timing=TIMING))
    assert _sent(effects) == ["ReleaseInventory"]
    assert _applied(saga, saga.cancel(by="alice", reason="again", now=T0, timing=TIMING)) == []
    effects = _answer(saga, "InventoryReleased", items=[])
    assert _order(effects) == [OrderEffect("cancel", reason="no longer needed", by="alice")]
    with pytest.raises(SagaRuleViolation):
        _applied(saga, saga.cancel(by="alice", reason="x", now=T0, timing=TIMING))


def test_cancel_after_completion_refunds_and_restocks_before_cancelling() -> None:
    saga = _completed()
    effects = _applied(saga, saga.cancel(by="alice", reason="return", now=T0, timing=TIMING))
    assert _sent(effects) == ["ReleaseInventory", "RefundPayment"]
    refund = next(e for e in effects if isinstance(e, Send) and e.command == "RefundPayment")
    assert refund.data["amount"] is None
    assert _order(_answer(saga, "PaymentRefunded", amount="10.00")) == []
    assert _order(_answer(saga, "InventoryReleased", restocked=True)) == [
        OrderEffect("cancel", reason="return", by="alice")
    ]


def test_failing_a_completed_order_is_refused() -> None:
    saga = _completed()
    with pytest.raises(SagaRuleViolation):
        saga.fail(by="admin", now=T0, timing=TIMING)


def test_a_command_changes_nothing_until_its_change_is_applied() -> None:
    saga = _paying()
    before = replace(saga, pending=list(saga.pending), commands=dict(saga.commands))
    effects = saga.cancel(by="alice", reason="stop", now=T0, timing=TIMING)
    assert saga == before
    (changed,) = [effect for effect in effects if isinstance(effect, Changed)]
    assert effects[-1] is changed
    assert (changed.values["state"], changed.values["outcome"]) == ("COMPENSATING", "CANCELLED")
    saga.apply(changed)
    assert (saga.state, saga.outcome, saga.cancelled_by) == ("COMPENSATING", "CANCELLED", "alice")
    # A repeat decides nothing and changes nothing: no Changed effect at all.
    assert saga.cancel(by="alice", reason="again", now=T0, timing=TIMING) == []


def test_cancel_while_paying_waits_for_the_payment_and_refunds_a_late_capture() -> None:
    saga = _paying()
    _applied(saga, saga.cancel(by="alice", reason="stop", now=T0, timing=TIMING))
    assert saga.pending == ["RELEASE_INVENTORY", "AWAIT_PAYMENT_OUTCOME"]
    assert _order(_answer(saga, "InventoryReleased")) == []
    effects = _answer(saga, "PaymentProcessed")
    assert _sent(effects) == ["RefundPayment"] and saga.state == "COMPENSATING"
    assert _order(_answer(saga, "PaymentRefunded")) == [OrderEffect("cancel", reason="stop", by="alice")]


def test_cancel_while_paying_ends_when_the_payment_failed() -> None:
    saga = _paying()
    _applied(saga, saga.cancel(by="alice", reason="stop", now=T0, timing=TIMING))
    _answer(saga, "PaymentFailed", reason="PAYMENT_DECLINED")
    assert _order(_answer(saga, "InventoryReleased"))[0].action == "cancel"


def test_a_capture_after_the_saga_ended_is_refunded() -> None:
    saga, _ = _started()
    _applied(saga, saga.mark_failed(admin="admin", now=T0, timing=TIMING))
    assert saga.state == "FAILED"
    effects = _answer(saga, "PaymentProcessed")
    assert _sent(effects) == ["RefundPayment"] and saga.state == "FAILED"


def test_a_reservation_after_the_saga_ended_is_released() -> None:
    saga, _ = _started()
    _applied(saga, saga.cancel(by="alice", reason="x", now=T0, timing=TIMING))
    _answer(saga, "InventoryReleased", items=[])
    assert saga.state == "COMPENSATED"
    assert _sent(_answer(saga, "InventoryReserved")) == ["ReleaseInventory"]


def test_a_forward_step_without_an_answer_is_sent_again_with_backoff_until_the_deadline() -> None:
    saga, _ = _started()
    first = saga.commands["RESERVE_INVENTORY"][0]
    assert _applied(saga, saga.time_out(now=saga.deadline - timedelta(seconds=1), timing=TIMING)) == []
    resent_at = []
    while saga.deadline < saga.expiry:
        resent_at.append(saga.deadline)
        effects = _applied(saga, saga.time_out(now=saga.deadline, timing=TIMING))
        assert _sent(effects) == ["ReserveInventory"] and saga.state == "STARTED"
        assert effects[0] == SagaStepTimedOut(**saga._step_data(outcome="RESENT"))
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(resent_at)]
    assert gaps[:3] == [20, 40, 80]  # doubling from resend_after (10 s)
    # The answer to the first command still counts: every command of the step is idempotent.
    assert first in saga.commands["RESERVE_INVENTORY"] or len(saga.commands["RESERVE_INVENTORY"]) == 8
    _answer(saga, "InventoryReserved", cause=saga.commands["RESERVE_INVENTORY"][0])
    assert saga.state == "PAYMENT_PROCESSING"


def test_timeout_compensates_a_stalled_saga_and_fails_with_timeout() -> None:
    saga, _ = _started()
    assert _applied(saga, saga.time_out(now=T0 + timedelta(seconds=9), timing=TIMING)) == []
    effects = _applied(saga, saga.time_out(now=T0 + timedelta(seconds=300), timing=TIMING))
    assert saga.state == "COMPENSATING" and _sent(effects) == ["ReleaseInventory"]
    assert _order(_answer(saga, "InventoryReleased")) == [OrderEffect("fail", reason="TIMEOUT")]


def test_a_compensation_that_keeps_failing_is_retried_with_backoff_then_parked() -> None:
    saga = _paying()
    _answer(saga, "PaymentFailed", reason="PAYMENT_DECLINED")
    now = T0
    for attempt, wait in ((2, 20), (3, 40)):
        now = saga.deadline
        effects = _applied(saga, saga.time_out(now=now, timing=TIMING))
        assert _sent(effects) == ["ReleaseInventory"]
        assert saga.attempts == attempt and saga.deadline == now + timedelta(seconds=wait)
    effects = _applied(saga, saga.time_out(now=saga.deadline, timing=TIMING))
    assert saga.needs_attention and saga.state == "COMPENSATING"
    assert [e.event_type for e in effects if isinstance(e, Event)] == ["SagaStepTimedOut", "SagaParked"]
    assert _applied(saga, saga.time_out(now=saga.deadline + timedelta(days=1), timing=TIMING)) == []


def test_admin_retry_resends_the_step_and_clears_attention() -> None:
    saga = _paying()
    saga.needs_attention = True
    effects = _applied(saga, saga.retry_step(admin="admin", now=T0, timing=TIMING))
    assert _sent(effects) == ["ProcessPayment"] and not saga.needs_attention and saga.attempts == 2
    assert effects[0] == SagaStepRetried(
        order_id=ORDER_ID, step="PROCESS_PAYMENT", attempt=2, outcome="RETRIED", admin="admin"
    )


def test_admin_force_compensation_as_failure_or_cancellation() -> None:
    saga = _paying()
    effects = _applied(
        saga, saga.force_compensation(admin="admin", as_cancellation=False, now=T0, timing=TIMING)
    )
    assert isinstance(effects[0], Event) and effects[0].event_type == "SagaManuallyCompensated"
    assert saga.failure_reason == "ADMIN"
    saga = _completed()
    with pytest.raises(SagaRuleViolation):
        _applied(saga, saga.force_compensation(admin="admin", as_cancellation=False, now=T0, timing=TIMING))
    _applied(saga, saga.force_compensation(admin="admin", as_cancellation=True, now=T0, timing=TIMING))
    _answer(saga, "InventoryReleased")
    assert _order(_answer(saga, "PaymentRefunded")) == [OrderEffect("cancel", reason="ADMIN", by="admin")]


def test_admin_mark_failed_ends_the_saga_and_the_order() -> None:
    saga = _paying()
    effects = _applied(saga, saga.mark_failed(admin="admin", now=T0, timing=TIMING))
    assert effects[0] == SagaManuallyFailed(order_id=ORDER_ID, admin="admin", step="PROCESS_PAYMENT")
    assert saga.state == "FAILED" and _order(effects) == [OrderEffect("fail", reason="ADMIN")]
    with pytest.raises(SagaRuleViolation):
        _applied(saga, saga.mark_failed(admin="admin", now=T0, timing=TIMING))


# --- the card token is kept only while the saga may still send ProcessPayment (issue 14) ------


def test_process_payment_names_the_customer_and_carries_the_token_until_the_payment_is_over() -> None:
    saga, _ = _started()
    assert saga.payment_token == "tok_ok" and saga.may_still_pay
    effects = _answer(saga, "InventoryReserved", expires_at="2026-01-01T00:05:00Z")
    pay = next(e for e in effects if isinstance(e, Send) and e.command == "ProcessPayment")
    assert pay.data["customer_id"] == "alice" and pay.data["token"] == "tok_ok"
    # the step sent again (no answer yet) still carries it
    resent = _applied(saga, saga.time_out(now=saga.deadline, timing=TIMING))
    assert [e.data["token"] for e in resent if isinstance(e, Send)] == ["tok_ok"]
    _answer(saga, "PaymentProcessed")
    assert (saga.step, saga.payment_token, saga.may_still_pay) == (domain.CONFIRM, "", False)


@pytest.mark.parametrize("reason", ["PAYMENT_DECLINED", "PAYMENT_UNAVAILABLE"])
def test_a_failed_payment_clears_the_token(reason: str) -> None:
    saga = _paying()
    _answer(saga, "PaymentFailed", reason=reason)
    assert (saga.state, saga.payment_token) == ("COMPENSATING", "")


def test_a_saga_that_fails_or_is_cancelled_before_paying_clears_the_token() -> None:
    out_of_stock, _ = _started()
    _answer(out_of_stock, "InventoryReservationFailed", reason="OUT_OF_STOCK")
    cancelled, _ = _started()
    _applied(cancelled, cancelled.cancel(by="alice", reason="changed my mind", now=T0, timing=TIMING))
    assert out_of_stock.payment_token == cancelled.payment_token == ""


def test_a_capture_heard_before_the_saga_asked_keeps_the_token_for_its_own_request() -> None:
    # an operator charged while the stock was being reserved: the saga still sends ProcessPayment
    saga, _ = _started()
    _answer(saga, "PaymentProcessed", cause="")
    assert saga.payment_token == "tok_ok"
    effects = _answer(saga, "InventoryReserved", expires_at="2026-01-01T00:05:00Z")
    assert [e.data["token"] for e in effects if isinstance(e, Send) and e.command == "ProcessPayment"] == [
        "tok_ok"
    ]
