"""Saga handlers on PostgreSQL: answers fed through eventstore.handling, effects checked in the store."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from eventstore.handling import handle
from eventstore.models import OutboxMessage
from eventstore.store import load_stream
from orders.handlers import load_order
from sagas import public as sagas_public
from sagas.handlers import sweep_timeouts
from sagas.models import SagaInstance, SagaStepAttempt, SagaTransition

from .conftest import answer

pytestmark = pytest.mark.django_db


def _commands(order_id: str) -> list[str]:
    return list(
        OutboxMessage.objects.filter(body__kind="command", body__correlation_id=order_id)
        .order_by("id")
        .values_list("routing_key", flat=True)
    )


def _saga(order_id: str) -> SagaInstance:
    return SagaInstance.objects.get(order_id=order_id)


def test_placing_an_order_starts_the_saga_in_the_same_transaction(placed_order) -> None:
    order_id = placed_order()
    order = load_order(order_id)
    assert (order.status, order.total_amount) == ("PENDING", "28.00")
    saga = _saga(order_id)
    assert (saga.state, saga.step, saga.order_status) == ("STARTED", "RESERVE_INVENTORY", "PENDING")
    assert _commands(order_id) == ["inventory.ReserveInventory"]
    reserve = OutboxMessage.objects.get(
        routing_key="inventory.ReserveInventory", body__correlation_id=order_id
    )
    assert reserve.body["aggregate_id"] == f"reservation-{order_id}"
    assert reserve.body["data"]["items"] == [
        {"product_id": "SKU-A", "quantity": 2},
        {"product_id": "SKU-B", "quantity": 1},
    ]
    assert reserve.body["causation_id"] == load_stream(order_id)[0].message_id
    assert [m.type for m in load_stream(f"saga-{order_id}")] == ["SagaStarted"]
    assert sagas_public.saga_summary(order_id)["state"] == "STARTED"


def test_happy_path_completes_the_order_with_the_saga(placed_order) -> None:
    order_id = placed_order()
    reserved = answer("InventoryReserved", order_id, items=[], expires_at="2099-01-01T00:00:00Z")
    assert handle("sagas", reserved)
    assert not handle("sagas", reserved), "a redelivered answer is handled once"
    assert load_order(order_id).status == "PAYMENT_PROCESSING"
    assert _commands(order_id)[-1] == "payments.ProcessPayment"
    handle("sagas", answer("PaymentProcessed", order_id, payment_id="p", amount="28.00", attempts=1))
    assert _commands(order_id)[-1] == "inventory.ConfirmInventory"
    handle("sagas", answer("InventoryConfirmed", order_id, items=[]))
    order = load_order(order_id)
    assert order.status == "COMPLETED"
    assert [m.type for m in load_stream(order_id)] == [
        "OrderCreated",
        "OrderStatusUpdated",
        "OrderStatusUpdated",
        "OrderCompleted",
    ]
    saga = _saga(order_id)
    assert (saga.state, saga.step, saga.captured, saga.confirmed) == ("COMPLETED", None, True, True)
    assert list(SagaTransition.objects.filter(saga=saga).values_list("to_state", flat=True)) == [
        "INVENTORY_RESERVED",
        "PAYMENT_PROCESSING",
        "PAYMENT_PROCESSING",
        "COMPLETED",
    ]
    outcomes = set(SagaStepAttempt.objects.filter(saga=saga).values_list("step", "outcome"))
    assert outcomes == {
        ("RESERVE_INVENTORY", "SUCCEEDED"),
        ("PROCESS_PAYMENT", "SUCCEEDED"),
        ("CONFIRM_INVENTORY", "SUCCEEDED"),
    }
    assert load_stream(order_id)[-1].causation_id  # the order's terminal event names its cause


def test_out_of_stock_fails_the_order(placed_order) -> None:
    order_id = placed_order()
    handle("sagas", answer("InventoryReservationFailed", order_id, reason="OUT_OF_STOCK", shortages=[]))
    order = load_order(order_id)
    assert (order.status, order.failure_reason) == ("FAILED", "OUT_OF_STOCK")
    assert _saga(order_id).state == "FAILED"
    assert _commands(order_id) == ["inventory.ReserveInventory"]


def test_payment_declined_compensates_before_the_order_fails(placed_order) -> None:
    order_id = placed_order("tok_declined")
    handle("sagas", answer("InventoryReserved", order_id, items=[], expires_at="2099-01-01T00:00:00Z"))
    handle(
        "sagas", answer("PaymentFailed", order_id, reason="PAYMENT_DECLINED", error="declined", attempts=1)
    )
    assert load_order(order_id).status == "PAYMENT_PROCESSING", "not terminal before the release is answered"
    assert _saga(order_id).state == "COMPENSATING"
    assert _commands(order_id)[-1] == "inventory.ReleaseInventory"
    handle(
        "sagas", answer("InventoryReleased", order_id, items=[], reason="PAYMENT_DECLINED", restocked=False)
    )
    order = load_order(order_id)
    assert (order.status, order.failure_reason) == ("FAILED", "PAYMENT_DECLINED")
    assert _saga(order_id).state == "COMPENSATED"


def test_cancellation_is_refused_once_the_order_failed(placed_order) -> None:
    order_id = placed_order()
    assert sagas_public.request_cancellation(order_id=order_id, by="alice", reason="x") == "PENDING"
    assert sagas_public.request_cancellation(order_id=order_id, by="alice", reason="x") == "PENDING"
    handle("sagas", answer("InventoryReleased", order_id, items=[], reason="CANCELLED", restocked=False))
    assert load_order(order_id).status == "CANCELLED"
    with pytest.raises(sagas_public.SagaConflict):
        sagas_public.request_cancellation(order_id=order_id, by="alice", reason="x")
    with pytest.raises(sagas_public.SagaConflict):
        sagas_public.request_failure(order_id=order_id, by="admin", reason="x")


def test_a_capture_after_a_timeout_compensation_is_refunded_before_the_order_fails(placed_order) -> None:
    order_id = placed_order("tok_slow")
    handle("sagas", answer("InventoryReserved", order_id, items=[], expires_at="2099-01-01T00:00:00Z"))
    assert sweep_timeouts(now=timezone.now() + timedelta(days=1)) == 1
    assert _saga(order_id).state == "COMPENSATING"
    handle("sagas", answer("InventoryReleased", order_id, items=[], reason="TIMEOUT", restocked=False))
    assert _saga(order_id).state == "COMPENSATING", "the payment outcome is still unknown"
    handle("sagas", answer("PaymentProcessed", order_id, payment_id="p", amount="28.00", attempts=1))
    assert _commands(order_id)[-1] == "payments.RefundPayment"
    assert load_order(order_id).status == "PAYMENT_PROCESSING"
    handle(
        "sagas", answer("PaymentRefunded", order_id, payment_id="p", amount="28.00", refunded_amount="28.00")
    )
    order = load_order(order_id)
    assert (order.status, order.failure_reason) == ("FAILED", "TIMEOUT")


def test_a_stuck_compensation_is_retried_then_parked(placed_order, settings) -> None:
    settings.SAGA_STEP_TIMEOUT = 1
    settings.SAGA_STEP_RETRIES = 2
    order_id = placed_order()
    sagas_public.request_cancellation(order_id=order_id, by="alice", reason="x")
    now = timezone.now()
    for _ in range(2):
        now += timedelta(hours=1)
        assert sweep_timeouts(now=now) == 1
    assert _commands(order_id).count("inventory.ReleaseInventory") == 3
    now += timedelta(hours=1)
    assert sweep_timeouts(now=now) == 1
    saga = _saga(order_id)
    assert (saga.state, saga.needs_attention) == ("COMPENSATING", True)
    assert sagas_public.saga_summary(order_id)["needs_attention"] is True
    assert sweep_timeouts(now=now + timedelta(days=1)) == 0
    timed_out = SagaStepAttempt.objects.filter(saga=saga, outcome=SagaStepAttempt.TIMED_OUT).count()
    assert timed_out == 3
    assert load_order(order_id).status == "PENDING"
