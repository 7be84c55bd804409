"""Catch-up by position: a late-committing event is applied, never skipped; lag shows the gap."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from eventstore.reader import Position
from eventstore.store import append
from queries.models import OrderReadModel, ProjectionState
from queries.public import projection_lags
from queries.replay import catch_up, lag
from tests.fixtures.events import untyped_event
from tests.fixtures.stack import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def _append_created(order_id: str, customer_id: str) -> None:
    data = {
        "order_id": order_id,
        "customer_id": customer_id,
        "items": [{"product_id": "P-1", "product_name": "Lamp", "quantity": 1, "price": "10.00"}],
        "total_amount": "10.00",
        "payment": {"method": "card"},
    }
    append(
        context="orders",
        aggregate_type="order",
        aggregate_id=order_id,
        expected_version=0,
        events=[untyped_event("OrderCreated", data)],
        correlation_id=order_id,
    )


def _projected(order_id: str) -> bool:
    return OrderReadModel.objects.filter(order_id=order_id).exists()


def test_catch_up_does_not_skip_a_late_committing_event() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the late commit needs two PostgreSQL sessions")
    early, late = str(uuid.uuid4()), str(uuid.uuid4())
    appended, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def slow_writer() -> None:
        # takes the lower id first and commits last
        try:
            with transaction.atomic():
                _append_created(early, "alice")
                appended.set()
                assert release.wait(10)
        except BaseException as exc:
            errors.append(exc)
            appended.set()
        finally:
            connection.close()

    writer = threading.Thread(target=slow_writer)
    writer.start()
    assert appended.wait(10)
    with transaction.atomic():
        _append_created(late, "bob")  # a higher id, committed first

    catch_up("orders")
    # the committed later row is not taken while an older transaction may still commit below it
    assert not _projected(early) and not _projected(late)
    assert lag("orders").events >= 1 and lag("orders").seconds >= 0

    release.set()
    writer.join(10)
    assert not errors
    # Other sessions of the cluster may hold the horizon back a moment: poll.
    wait_until(lambda: catch_up("orders") >= 0 and _projected(early) and _projected(late), timeout=60)
    position = Position.parse(ProjectionState.objects.get(name="orders").position)
    assert position.id > 0
    assert lag("orders").events == 0 and lag("orders").checkpoint_events == 0


def test_lag_counts_unapplied_events_and_their_age() -> None:
    wait_until(lambda: catch_up("orders") >= 0 and lag("orders").events == 0, timeout=60)
    order_id = str(uuid.uuid4())
    with transaction.atomic():
        _append_created(order_id, "alice")  # stored, not delivered to the projector yet
    behind = {item["projection"]: item for item in projection_lags()}
    assert behind["orders"]["events"] == 1 and behind["orders"]["checkpoint_events"] >= 1
    assert behind["orders"]["seconds"] >= 0
    assert behind["payments"]["events"] == 0

    wait_until(lambda: catch_up("orders") >= 0 and _projected(order_id), timeout=60)
    assert {item["projection"]: item["events"] for item in projection_lags()} == {"orders": 0, "payments": 0}
    assert catch_up("orders") == 0  # nothing new; the bus delivering it now changes nothing
    from eventstore.store import load_stream

    from .conftest import deliver

    deliver(load_stream(order_id)[0])
    assert OrderReadModel.objects.filter(order_id=order_id).count() == 1


def _append(order_id: str, version: int, event_type: str, data: dict) -> None:
    append(
        context="orders",
        aggregate_type="order",
        aggregate_id=order_id,
        expected_version=version - 1,
        events=[untyped_event(event_type, {"order_id": order_id, **data})],
        correlation_id=order_id,
    )


def _live_orders(count: int) -> list[str]:
    """Orders stored and applied by the live projector (delivered as the bus does)."""
    from eventstore.store import load_stream

    from .conftest import deliver

    order_ids = [str(uuid.uuid4()) for _ in range(count)]
    for order_id in order_ids:
        with transaction.atomic():
            _append_created(order_id, "carol")
            _append(order_id, 2, "OrderStatusUpdated", {"status": "STOCK_RESERVED"})
        deliver(*load_stream(order_id))
    return order_ids


def _status(order_id: str) -> str:
    return OrderReadModel.objects.get(order_id=order_id).status


def _settled() -> None:
    """Every event stored so far is behind the checkpoint (other sessions may hold the horizon)."""
    for name in ("orders", "payments"):
        wait_until(lambda n=name: catch_up(n) >= 0 and lag(n).checkpoint_events == 0, timeout=60)


def test_catch_up_fills_only_the_gaps_the_live_projector_left() -> None:
    applied_live = _live_orders(3)
    missed = str(uuid.uuid4())
    with transaction.atomic():
        _append_created(missed, "dave")  # never delivered: a whole stream missing
        _append(applied_live[1], 3, "OrderCompleted", {})  # never delivered: the end of a stream

    applied: list[int] = []
    wait_until(lambda: applied.append(catch_up("orders")) is None and _projected(missed), timeout=60)
    _settled()

    assert sum(applied) == 2  # the two gaps, not the eight events the bus had applied
    assert _status(missed) == "PENDING"
    assert _status(applied_live[1]) == "COMPLETED"
    assert {_status(applied_live[0]), _status(applied_live[2])} == {"STOCK_RESERVED"}
    assert lag("orders").events == 0
    assert catch_up("orders") == 0


def test_catch_up_in_small_batches_stops_its_checkpoint_at_the_last_gap_it_filled() -> None:
    _settled()
    order_ids = _live_orders(2)
    missed = [str(uuid.uuid4()) for _ in range(3)]
    with transaction.atomic():
        for order_id in missed:
            _append_created(order_id, "erin")
        _append(order_ids[0], 3, "OrderCancelled", {})

    # One gap per batch: each batch's checkpoint must not move past a gap it has not looked at.
    wait_until(
        lambda: catch_up("orders", limit=1, scan=2) >= 0 and all(_projected(o) for o in missed),
        timeout=60,
    )
    _settled()
    assert _status(order_ids[0]) == "CANCELLED"
    assert lag("orders").events == 0


def _catch_up_statements() -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        catch_up("orders")
        catch_up("payments")
    return [q["sql"] for q in captured.captured_queries if not q["sql"].startswith(("BEGIN", "COMMIT"))]


def test_a_catch_up_with_no_gap_costs_the_same_few_statements_for_any_number_of_orders() -> None:
    _live_orders(1)
    _settled()
    _live_orders(3)
    few = _catch_up_statements()
    _live_orders(30)
    many = _catch_up_statements()

    # Per projection: its lock (PostgreSQL), its state row, one look for gaps (SQLite: the
    # events, then their cursors), the checkpoint saved.
    assert len(few) == len(many) <= 8, "\n".join([*few, "--", *many])
    assert not any("event_stream_cursor" in sql and "INSERT" in sql for sql in many)


def test_a_gap_younger_than_the_grace_is_left_to_the_bus_and_the_checkpoint_waits_before_it(
    settings,
) -> None:
    # given a stream the bus has not delivered yet, written just now
    _settled()
    missed = str(uuid.uuid4())
    with transaction.atomic():
        _append_created(missed, "frank")
    settings.PROJECTION_CATCH_UP_GRACE_SECONDS = 3600.0

    # when catch-up runs within the grace: it applies nothing and keeps the event ahead of it
    assert catch_up("orders") == 0
    assert not _projected(missed)
    assert lag("orders").checkpoint_events >= 1

    # then once the event is older than the grace, the next run fills the gap
    settings.PROJECTION_CATCH_UP_GRACE_SECONDS = 0.0
    wait_until(lambda: catch_up("orders") >= 0 and _projected(missed), timeout=60)
    assert lag("orders").events == 0


@pytest.mark.stack
def test_the_catch_up_waits_while_a_live_projector_works_through_a_backlog(settings) -> None:
    """Events queued for a live consumer are on their way: filling them here would do the live
    projector's work twice and fail its batches (issue 11: seen in make bench under overload)."""
    from kombu import Connection

    from eventstore.topology import broker_connection, work_queue_name
    from queries.tasks import catch_up_projections
    from tests.fixtures.stack import purge_queues

    # given an event past the grace that the bus has not applied
    purge_queues()
    _settled()
    missed = str(uuid.uuid4())
    with transaction.atomic():
        _append_created(missed, "grace")
    settings.PROJECTION_CATCH_UP_GRACE_SECONDS = 0.0
    queue = work_queue_name("queries")
    # and the queries queue with a message in the hands of a live consumer and one more ready
    with broker_connection() as producer:
        channel = producer.channel()
        for _ in range(2):
            channel.basic_publish(channel.prepare_message(b"{}"), exchange="", routing_key=queue)
        channel.close()
    consumer: Connection = broker_connection()
    try:
        channel = consumer.channel()
        channel.basic_qos(0, 1, False)
        received: list[object] = []
        channel.basic_consume(queue=queue, callback=received.append)
        consumer.drain_events(timeout=10)
        assert len(received) == 1

        # when the catch-up runs, then it leaves the event to the bus
        assert catch_up_projections() == {}
        assert not _projected(missed)
    finally:
        consumer.close()  # its unacked message goes back to the queue

    try:
        # and once nobody consumes the queue any more, it fills the gap
        wait_until(lambda: catch_up_projections().get("orders", 0) >= 0 and _projected(missed), timeout=60)
    finally:
        purge_queues()
