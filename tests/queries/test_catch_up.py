"""Catch-up by position: a late-committing event is applied, never skipped; lag shows the gap."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connection, transaction

from eventstore.reader import Position
from eventstore.store import NewEvent, append
from queries.models import OrderReadModel, ProjectionState
from queries.public import projection_lags
from queries.replay import catch_up, lag
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
        events=[NewEvent("OrderCreated", data)],
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
