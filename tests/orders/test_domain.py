"""Order aggregate rules: given events → command → expected events (no database)."""

from decimal import Decimal

import pytest

from eventstore.catalogue import to_data
from orders import domain
from orders.domain import Order, OrderRuleViolation, PricedLine, RecordedEvent
from orders.events import OrderCompleted, OrderEvent

ORDER_ID = "6f1c2f8e-0000-4000-8000-000000000001"


def _history(*events: OrderEvent) -> Order:
    recorded = [
        RecordedEvent(e, version, f"2026-01-01T00:00:0{version}Z")
        for version, e in enumerate(events, start=1)
    ]
    order = Order.from_history(ORDER_ID, recorded)
    assert order is not None
    return order


def _created() -> OrderEvent:
    lines = [
        PricedLine("SKU-1", "Widget", 2, Decimal("10.5")),
        PricedLine("SKU-2", "Gadget", 1, Decimal("3.333")),
    ]
    return domain.place_order(order_id=ORDER_ID, customer_id="alice", lines=lines, payment_method="card")[0]


def test_place_order_prices_and_totals_from_the_catalogue() -> None:
    created = _created()
    assert created.event_type == "OrderCreated"
    assert to_data(created)["total_amount"] == "24.33"
    assert to_data(created)["items"][0] == {
        "product_id": "SKU-1",
        "product_name": "Widget",
        "quantity": 2,
        "price": "10.50",
    }
    assert to_data(created)["payment"] == {"method": "card"}


def test_place_order_rejects_duplicate_or_missing_lines() -> None:
    line = PricedLine("SKU-1", "Widget", 1, Decimal("1"))
    with pytest.raises(OrderRuleViolation):
        domain.place_order(order_id=ORDER_ID, customer_id="a", lines=[line, line], payment_method="card")
    with pytest.raises(OrderRuleViolation):
        domain.place_order(order_id=ORDER_ID, customer_id="a", lines=[], payment_method="card")


def test_rebuilt_order_is_pending_with_timestamps_and_version() -> None:
    order = _history(_created())
    assert (order.status, order.version, order.customer_id) == ("PENDING", 1, "alice")
    assert order.created_at == order.updated_at == "2026-01-01T00:00:01Z"


def test_no_events_means_no_order() -> None:
    assert Order.from_history(ORDER_ID, []) is None


def test_status_moves_forward_only_and_repeats_are_silent() -> None:
    order = _history(_created())
    [event] = order.set_status("INVENTORY_RESERVED")
    assert to_data(event) == {
        "order_id": ORDER_ID,
        "status": "INVENTORY_RESERVED",
        "previous_status": "PENDING",
    }
    order = _history(_created(), event)
    assert order.set_status("INVENTORY_RESERVED") == []
    assert to_data(order.set_status("PAYMENT_PROCESSING")[0])["previous_status"] == "INVENTORY_RESERVED"
    with pytest.raises(OrderRuleViolation):
        order.set_status("COMPLETED")


def test_complete_is_idempotent_and_final() -> None:
    order = _history(_created())
    [completed] = order.complete()
    order = _history(_created(), completed)
    assert order.status == "COMPLETED"
    assert order.complete() == []
    with pytest.raises(OrderRuleViolation):
        order.fail(reason="TIMEOUT")
    assert order.set_status("PAYMENT_PROCESSING") == []


def test_fail_records_a_known_reason() -> None:
    order = _history(_created())
    with pytest.raises(OrderRuleViolation):
        order.fail(reason="BECAUSE")
    [failed] = order.fail(reason="OUT_OF_STOCK")
    order = _history(_created(), failed)
    assert (order.status, order.failure_reason) == ("FAILED", "OUT_OF_STOCK")
    assert order.fail(reason="OUT_OF_STOCK") == []
    with pytest.raises(OrderRuleViolation):
        order.cancel(by="alice", reason="x")


def test_a_completed_order_can_be_cancelled_after_compensation() -> None:
    order = _history(_created(), OrderCompleted(order_id=ORDER_ID))
    [cancelled] = order.cancel(by="alice", reason="changed my mind")
    assert to_data(cancelled) == {"order_id": ORDER_ID, "reason": "changed my mind", "by": "alice"}
    order = _history(_created(), OrderCompleted(order_id=ORDER_ID), cancelled)
    assert order.status == "CANCELLED"
    assert order.cancel(by="alice", reason="again") == []
