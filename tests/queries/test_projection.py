"""The projection: order and payment events applied once, in order per stream."""

from __future__ import annotations

import pytest

from eventstore.store import load_stream
from queries.models import OrderItemReadModel, OrderReadModel, PaymentReadModel
from queries.projections import active_generation

from .conftest import created, day, deliver, event

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_saga_run_is_projected_with_its_lines_and_payment(place_and_run) -> None:
    completed = place_and_run("alice", [("SKU-W", 2), ("SKU-G", 1)])
    declined = place_and_run("bob", [("SKU-G", 1)], token="tok_declined")

    row = OrderReadModel.objects.get(order_id=completed, generation=active_generation("orders"))
    assert (row.customer_id, row.status, str(row.total_amount)) == ("alice", "COMPLETED", "28.00")
    assert row.version == load_stream(completed)[-1].version
    lines = OrderItemReadModel.objects.filter(order=row).order_by("product_id")
    assert [(i.product_id, i.product_name, i.quantity, str(i.price)) for i in lines] == [
        ("SKU-G", "Green Gadget", 1, "3.00"),
        ("SKU-W", "Blue Widget", 2, "12.50"),
    ]
    failed = OrderReadModel.objects.get(order_id=declined)
    assert (failed.status, failed.failure_reason) == ("FAILED", "PAYMENT_DECLINED")
    outcomes = dict(PaymentReadModel.objects.values_list("order_id", "outcome"))
    assert {str(k): v for k, v in outcomes.items()} == {completed: "CAPTURED", declined: "FAILED"}


def test_a_redelivered_event_is_not_applied_twice() -> None:
    first = created("alice", [("P-1", "Lamp", 1, "10.00")], at=day(2))
    done = event(first.aggregate_id, "OrderCompleted", 2, {}, at=day(2, 13))
    deliver(first, done)
    deliver(first, done)  # the broker redelivers both (same message ids)
    # the same event under another message id (a replay): the stream cursor stops it
    deliver(created("alice", [("P-1", "Lamp", 1, "10.00")], at=day(2), order_id=first.aggregate_id))

    assert OrderReadModel.objects.filter(order_id=first.aggregate_id).count() == 1
    assert OrderItemReadModel.objects.filter(order__order_id=first.aggregate_id).count() == 1
    assert OrderReadModel.objects.get(order_id=first.aggregate_id).status == "COMPLETED"


def test_an_event_arriving_ahead_of_its_stream_pulls_the_missing_ones(place_and_run) -> None:
    order_id = place_and_run("alice", [("SKU-W", 1)])
    stream = load_stream(order_id)
    OrderReadModel.objects.all().delete()
    from eventstore.models import StreamCursor

    StreamCursor.objects.filter(consumer__startswith="queries.orders").delete()

    deliver(stream[-1].__class__(**{**_fields(stream[-1]), "message_id": _new_id()}))  # only the last one

    row = OrderReadModel.objects.get(order_id=order_id)
    assert (row.status, row.version) == ("COMPLETED", stream[-1].version)


def _fields(message) -> dict:
    return {name: getattr(message, name) for name in message.__dataclass_fields__}


def _new_id() -> str:
    import uuid

    return str(uuid.uuid4())
