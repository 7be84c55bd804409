"""A consumer's batch of events for the read models: claimed and written set-based, same result.

The batch's stream cursors are claimed in one statement per projection and its rows written
in one statement per table, whatever its size; a stream the claim cannot take (a gap, a
version already applied) still goes through ``apply_in_order`` in the same transaction.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from eventstore.handling import handle, handle_batch
from eventstore.messages import Message
from eventstore.models import StreamCursor
from eventstore.store import append
from queries.models import OrderItemReadModel, OrderReadModel, PaymentReadModel
from queries.public import CONTEXT
from tests.fixtures.events import untyped_event

from .conftest import created, day, event

pytestmark = pytest.mark.django_db

LINES = [("P-1", "Lamp", 1, "10.00"), ("P-2", "Rug", 2, "5.00")]


def _payment(order_id: str, event_type: str, version: int) -> Message:
    return Message(
        message_id=str(uuid.uuid4()),
        kind="event",
        type=event_type,
        aggregate_type="payment",
        aggregate_id=f"pay-{order_id}",
        data={"order_id": order_id, "amount": "20.00"},
        occurred_at="2026-01-02T12:00:00Z",
        correlation_id=order_id,
        version=version,
        source="payments",
    )


def _life(customer: str, n: int) -> list[Message]:
    """One order's events: created, reserved, then completed and captured or failed and declined."""
    order = created(customer, LINES, at=day(2))
    order_id = order.aggregate_id
    reserved = event(order_id, "OrderStatusUpdated", 2, {"status": "INVENTORY_RESERVED"}, at=day(2, 13))
    if n % 2:
        return [
            order,
            reserved,
            _payment(order_id, "PaymentFailed", 1),
            event(order_id, "OrderFailed", 3, {"reason": "PAYMENT_DECLINED"}, at=day(2, 14)),
        ]
    return [
        order,
        reserved,
        _payment(order_id, "PaymentProcessed", 1),
        _payment(order_id, "PaymentFailed", 2),  # a capture stays final
        event(order_id, "OrderCompleted", 3, {}, at=day(2, 14)),
    ]


def _batch(messages: list[Message], caplog: pytest.LogCaptureFixture) -> list[str]:
    """Handle ``messages`` as one batch; its statements (no savepoints), asserting no fallback."""
    caplog.set_level(logging.INFO, logger="eventstore.handling")
    with CaptureQueriesContext(connection) as captured:
        assert handle_batch(CONTEXT, messages) == [None] * len(messages)
    assert "handling one by one" not in caplog.text, "the batch fell back to one message at a time"
    return [q["sql"] for q in captured.captured_queries if "SAVEPOINT" not in q["sql"]]


def _read_models(order_ids: list[str]) -> list[tuple[Any, ...]]:
    rows = []
    for order_id in order_ids:
        row = OrderReadModel.objects.get(order_id=order_id)
        lines = sorted(
            OrderItemReadModel.objects.filter(order=row).values_list("product_id", "quantity", "price")
        )
        payment = PaymentReadModel.objects.get(order_id=order_id)
        rows.append(
            (
                row.customer_id,
                row.status,
                row.failure_reason,
                row.version,
                row.updated_at,
                row.total_amount,
                tuple(sorted(lines)),
                payment.outcome,
                payment.updated_at,
            )
        )
    return rows


@pytest.mark.parametrize("orders", [1, 50])
def test_a_batch_costs_the_same_statements_whatever_its_size(caplog, orders: int) -> None:
    handle(CONTEXT, created("warm", LINES, at=day(1)))  # the projections' state rows exist
    handle(CONTEXT, _payment(str(uuid.uuid4()), "PaymentFailed", 1))
    # ``orders`` orders created before the batch, the rest of their lives in it, and as many
    # orders whose whole life is in the batch
    earlier = [_life(f"e{n % 7}", n) for n in range(orders)]
    for life in earlier:
        handle(CONTEXT, life[0])
    messages = [m for life in earlier for m in life[1:]]
    messages += [m for n in range(orders) for m in _life(f"c{n % 7}", n)]

    statements = _batch(messages, caplog)

    # inbox; the cursors claimed, one statement per projection; the new orders with all their
    # lines, the changed orders, the payments: one statement each (the projections' shared
    # locks and generations were taken in this transaction already, by the warm-up)
    assert len(statements) == 6, "\n".join(s[:150] for s in statements)
    assert sum("event_stream_cursor" in sql for sql in statements) == 2
    assert sum(sql.startswith("UPDATE order_read_model") for sql in statements) == 1
    assert OrderReadModel.objects.filter(status__in=["COMPLETED", "FAILED"]).count() == 2 * orders
    assert OrderItemReadModel.objects.count() == len(LINES) * (2 * orders + 1)
    assert PaymentReadModel.objects.filter(outcome="CAPTURED").count() == 2 * ((orders + 1) // 2)


def test_a_batch_ends_in_the_same_read_models_as_its_events_one_by_one(caplog) -> None:
    one_by_one = [_life("alice", n) for n in range(4)]
    batched = [_life("bob", n) for n in range(4)]
    for messages in one_by_one:
        for message in messages:
            assert handle(CONTEXT, message) is True
    # the batch interleaves the orders and delivers each stream's events out of order
    interleaved = [m for step in range(5) for life in batched for m in reversed(life[step : step + 1])]
    _batch(list(reversed(interleaved)), caplog)

    def without_customer(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return [row[1:] for row in rows]

    expected = _read_models([life[0].aggregate_id for life in one_by_one])
    assert without_customer(_read_models([life[0].aggregate_id for life in batched])) == without_customer(
        expected
    )
    assert [row[1] for row in expected] == ["COMPLETED", "FAILED", "COMPLETED", "FAILED"]
    assert expected[1][2] == "PAYMENT_DECLINED"


def test_streams_the_claim_cannot_take_are_applied_in_order_in_the_same_batch(caplog) -> None:
    known = created("carol", LINES, at=day(3))
    handle(CONTEXT, known)
    order_id = known.aggregate_id
    reserved = event(order_id, "OrderStatusUpdated", 2, {"status": "INVENTORY_RESERVED"}, at=day(3, 13))
    completed = event(order_id, "OrderCompleted", 3, {}, at=day(3, 14))
    fresh = created("dave", LINES, at=day(3))

    # the stream's version 2 is missing from the batch (a gap: 3 pulls it from the store, which
    # holds the stream as always), and version 1 was applied already (a redelivery with a new
    # message id changes nothing)
    with transaction.atomic():
        append(
            context="orders",
            aggregate_type="order",
            aggregate_id=order_id,
            expected_version=0,
            events=[untyped_event(m.type, m.data) for m in (known, reserved, completed)],
        )
    again = created("carol", LINES, at=day(3), order_id=order_id)
    _batch([completed, fresh, again], caplog)

    row = OrderReadModel.objects.get(order_id=order_id)
    assert (row.status, row.version) == ("COMPLETED", 3)
    assert OrderReadModel.objects.get(order_id=fresh.aggregate_id).status == "PENDING"
    assert OrderItemReadModel.objects.filter(order=row).count() == 2  # not inserted twice
    cursor = StreamCursor.objects.get(consumer__startswith="queries.orders", aggregate_id=order_id)
    assert cursor.version == 3


@pytest.mark.parametrize("payments", [1, 50])
def test_payment_streams_whose_first_event_the_projection_does_not_read_cost_the_same_statements(
    caplog, payments: int
) -> None:
    # given payment streams as the payments context writes them: PaymentRequested (not read by
    # the read models, never delivered to them) before the outcome the read model shows
    handle(CONTEXT, _payment(str(uuid.uuid4()), "PaymentFailed", 1))  # the projection's state row
    outcomes = []
    for n in range(payments):
        order_id = str(uuid.uuid4())
        with transaction.atomic():
            stored = append(
                context="payments",
                aggregate_type="payment",
                aggregate_id=f"pay-{order_id}",
                expected_version=0,
                events=[
                    untyped_event("PaymentRequested", {"order_id": order_id, "amount": "20.00"}),
                    untyped_event("PaymentProcessed" if n % 2 else "PaymentFailed", {"order_id": order_id}),
                ],
            )
        outcome = stored[-1]
        outcomes.append(replace(outcome, source="payments"))

    # when the outcomes (version 2 of each stream) come as one batch
    statements = _batch(outcomes, caplog)

    # then each stream's cursor is moved past the unread version 1 together with the others:
    # the same statements for one stream as for fifty (inbox; the claim; the cursors created,
    # locked, the missing versions read, the cursors moved; the payments written)
    assert len(statements) == 7, "\n".join(s[:150] for s in statements)
    assert PaymentReadModel.objects.filter(outcome="CAPTURED").count() == payments // 2
    assert PaymentReadModel.objects.filter(outcome="FAILED").count() == payments - payments // 2 + 1
    cursors = StreamCursor.objects.filter(
        consumer__startswith="queries.payments", aggregate_id__startswith="pay-"
    )
    assert sorted(set(cursors.values_list("version", flat=True))) == [1, 2] if payments else []
    assert cursors.filter(version=2).count() == payments

    # and a redelivery of the same outcomes changes nothing
    again = [replace(m, message_id=str(uuid.uuid4())) for m in outcomes]
    _batch(again, caplog)
    assert PaymentReadModel.objects.filter(outcome="CAPTURED").count() == payments // 2
