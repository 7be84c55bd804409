"""Statements and cache round trips per projected event (the consumer's hot path), pinned.

Upper bounds equal to what the projector does today: one advisory lock and one generation read
per transaction and projection, then one cursor statement and one read-model statement per
event; the cache counters are bumped once per transaction, in one Redis call.
"""

from __future__ import annotations

import threading
import uuid

import pytest
from django.core.cache import cache as default_cache
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from eventstore.messages import Message
from eventstore.models import StreamCursor
from queries import cache
from queries.models import OrderItemReadModel, OrderReadModel, PaymentReadModel
from queries.projections import PROJECTIONS, project

from .conftest import created, day, deliver, event

pytestmark = pytest.mark.django_db(transaction=True)

LINES = [("P-1", "Lamp", 1, "10.00"), ("P-2", "Rug", 2, "5.00"), ("P-3", "Mat", 3, "1.00")]


def _statements(*messages: Message) -> list[str]:
    """The SQL statements of projecting ``messages`` in one transaction (BEGIN/COMMIT aside)."""
    with CaptureQueriesContext(connection) as captured, transaction.atomic():
        for message in messages:
            project(message)
    return [q["sql"] for q in captured.captured_queries if q["sql"] not in ("BEGIN", "COMMIT")]


def _payment(order_id: str, event_type: str = "PaymentProcessed", version: int = 1) -> Message:
    return Message(
        message_id=str(uuid.uuid4()),
        kind="event",
        type=event_type,
        aggregate_type="payment",
        aggregate_id=f"pay-{order_id}",
        data={"order_id": order_id, "amount": "10.00"},
        occurred_at="2026-01-02T12:00:00Z",
        correlation_id=order_id,
        version=version,
        source="payments",
    )


def _warm_up() -> None:
    """The projections' state rows exist (created at their first use)."""
    _statements(created("zed", LINES, at=day(1)), _payment(str(uuid.uuid4())))


def test_statements_per_event_in_its_own_transaction() -> None:
    _warm_up()
    first = created("alice", LINES, at=day(2))
    order_id = first.aggregate_id
    reserved = event(order_id, "OrderStatusUpdated", 2, {"status": "INVENTORY_RESERVED"}, at=day(2, 13))
    completed = event(order_id, "OrderCompleted", 3, {}, at=day(2, 14))

    # lock + generation + cursor + (order row and its 3 lines in one statement); was 7
    assert len(_statements(first)) <= 4
    # lock + generation + cursor + one UPDATE ... RETURNING; was 7
    assert len(_statements(reserved)) <= 4
    assert len(_statements(_payment(order_id))) <= 4  # upsert; was 7
    assert len(_statements(completed)) <= 4

    row = OrderReadModel.objects.get(order_id=order_id)
    assert (row.status, row.version, row.updated_at) == ("COMPLETED", 3, day(2, 14))
    assert sorted(OrderItemReadModel.objects.filter(order=row).values_list("product_id", "quantity")) == [
        ("P-1", 1),
        ("P-2", 2),
        ("P-3", 3),
    ]
    assert PaymentReadModel.objects.get(order_id=order_id).outcome == "CAPTURED"


def test_statements_per_event_in_a_batch() -> None:
    _warm_up()
    order = created("bob", LINES, at=day(3))
    batch = [
        order,
        event(order.aggregate_id, "OrderStatusUpdated", 2, {"status": "INVENTORY_RESERVED"}, at=day(3, 13)),
        event(order.aggregate_id, "OrderCompleted", 3, {}, at=day(3, 14)),
    ]
    # the lock and the generation once for the batch, then two statements per event; was 21
    assert len(_statements(*batch)) <= 2 + 2 * len(batch)
    assert OrderReadModel.objects.get(order_id=order.aggregate_id).status == "COMPLETED"


def test_a_capture_stays_final_through_the_upsert() -> None:
    order_id = str(uuid.uuid4())
    _statements(_payment(order_id, "PaymentProcessed", 1))
    _statements(_payment(order_id, "PaymentFailed", 2))
    assert PaymentReadModel.objects.get(order_id=order_id).outcome == "CAPTURED"
    other = str(uuid.uuid4())
    _statements(_payment(other, "PaymentFailed", 1))
    _statements(_payment(other, "PaymentProcessed", 2))
    assert PaymentReadModel.objects.get(order_id=other).outcome == "CAPTURED"


def test_an_update_for_a_stream_without_order_created_changes_nothing() -> None:
    stray = event(str(uuid.uuid4()), "OrderCompleted", 1, {}, at=day(4))
    with transaction.atomic():
        assert project(stray) == 1
    assert not OrderReadModel.objects.filter(order_id=stray.aggregate_id).exists()


def test_cache_counters_bumped_once_per_transaction_in_one_call(monkeypatch) -> None:
    calls: list[list[str]] = []
    original = cache._bump_in_one_call

    def spy(keys: list[str]) -> bool:
        calls.append(keys)
        return original(keys)

    monkeypatch.setattr(cache, "_bump_in_one_call", spy)
    before = {who: cache.generation(who) for who in (None, "alice", "bob")}
    alice, bob = created("alice", LINES, at=day(5)), created("bob", LINES, at=day(5))
    with transaction.atomic():
        for message in (alice, bob, event(alice.aggregate_id, "OrderCompleted", 2, {}, at=day(5, 13))):
            project(message)
        assert calls == []  # nothing before the commit

    assert len(calls) == 1 and len(calls[0]) == 3  # the global counter and both customers, once
    after = {who: cache.generation(who) for who in (None, "alice", "bob")}
    assert all(after[who] == before[who] + 1 for who in before)  # type: ignore[operator]


def test_bump_starts_a_missing_counter_and_increments_an_existing_one() -> None:
    default_cache.clear()
    cache.bump(customer_ids=["carol"])
    started = cache.generation("carol")
    assert isinstance(started, int) and started > 0
    cache.bump(customer_ids=["carol", "carol"])
    assert cache.generation("carol") == started + 1


def test_a_rolled_back_savepoint_drops_its_lock_and_the_next_event_takes_it_again() -> None:
    order = created("dave", LINES, at=day(6))
    projection = PROJECTIONS["orders"]
    with transaction.atomic():
        with pytest.raises(RuntimeError), transaction.atomic():
            project(order)
            raise RuntimeError("the savepoint rolls back")
        assert project(order) == 1  # applied again: the cursor move rolled back with the savepoint
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
                "AND objid::bigint = %s",
                [projection.lock_key],
            )
            assert cursor.fetchone()[0] == 1  # the shared lock is held again
    assert OrderItemReadModel.objects.filter(order__order_id=order.aggregate_id).count() == 3


def test_a_delivery_racing_the_same_version_waits_and_then_skips_it() -> None:
    order = created("erin", LINES, at=day(7))
    deliver(order)
    completed = event(order.aggregate_id, "OrderCompleted", 2, {}, at=day(7, 13))
    started, results = threading.Event(), []

    def second() -> None:
        try:
            started.wait(10)
            with transaction.atomic():
                results.append(project(completed))
        finally:
            connection.close()

    racer = threading.Thread(target=second)
    racer.start()
    with transaction.atomic():
        assert project(completed) == 1  # the cursor is at 2 and locked until this commits
        started.set()
        racer.join(0.5)
        assert racer.is_alive()  # blocked on the cursor row
    racer.join(10)
    assert results == [0]
    cursor = StreamCursor.objects.get(consumer__startswith="queries.orders", aggregate_id=order.aggregate_id)
    assert cursor.version == 2
