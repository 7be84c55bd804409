"""apply_in_order: events of one stream applied in version order whatever the arrival order."""

from __future__ import annotations

import uuid

import pytest
from django.db import transaction

from eventstore.messages import Message
from eventstore.models import StreamCursor
from eventstore.ordering import apply_in_order
from eventstore.store import append
from tests.fixtures.events import untyped_event

pytestmark = pytest.mark.django_db(transaction=True)


def _stream_of(count: int) -> list[Message]:
    stream = f"ordered-{uuid.uuid4()}"
    with transaction.atomic():
        return append(
            context="probe",
            aggregate_type="probe",
            aggregate_id=stream,
            expected_version=0,
            events=[untyped_event("ProbeTouched", {"n": n}) for n in range(1, count + 1)],
        )


def test_out_of_order_delivery_is_applied_in_version_order_reading_the_gap_from_the_store() -> None:
    # given a stream of four events delivered as 3, 1, 4, 2, 3
    events = _stream_of(4)
    applied: list[int | None] = []

    def deliver(message: Message) -> int:
        with transaction.atomic():
            return apply_in_order("probe-reader", message, lambda event: applied.append(event.version))

    # when they are delivered out of order (and one twice)
    counts = [deliver(events[i]) for i in (2, 0, 3, 1, 2)]

    # then versions 1 and 2 were read from the store before 3; late and repeated ones are no-ops
    assert applied == [1, 2, 3, 4]
    assert counts == [3, 0, 1, 0, 0]
    cursor = StreamCursor.objects.get(consumer="probe-reader", aggregate_id=events[0].aggregate_id)
    assert cursor.version == 4


def test_a_failed_apply_does_not_move_the_cursor() -> None:
    events = _stream_of(2)

    def explode(event: Message) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError), transaction.atomic():
        apply_in_order("probe-reader", events[1], explode)

    applied: list[int | None] = []
    with transaction.atomic():
        apply_in_order("probe-reader", events[1], lambda e: applied.append(e.version))
    assert applied == [1, 2]


def test_the_next_version_costs_one_statement_and_a_failed_apply_there_does_not_move_the_cursor() -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    events = _stream_of(3)
    applied: list[int | None] = []
    for message in events[:2]:
        with CaptureQueriesContext(connection) as captured, transaction.atomic():
            assert apply_in_order("probe-reader", message, lambda e: applied.append(e.version)) == 1
        statements = [q["sql"] for q in captured.captured_queries if q["sql"] not in ("BEGIN", "COMMIT")]
        assert len(statements) == 1

    def explode(event: Message) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError), transaction.atomic():
        apply_in_order("probe-reader", events[2], explode)
    with pytest.raises(RuntimeError):  # outside a transaction: one is opened, the same holds
        apply_in_order("probe-reader", events[2], explode)
    assert StreamCursor.objects.get(consumer="probe-reader", aggregate_id=events[0].aggregate_id).version == 2

    with transaction.atomic():
        assert apply_in_order("probe-reader", events[2], lambda e: applied.append(e.version)) == 1
        assert apply_in_order("probe-reader", events[0], lambda e: applied.append(e.version)) == 0
    assert applied == [1, 2, 3]


def test_a_cursor_left_at_zero_takes_the_first_version() -> None:
    events = _stream_of(1)
    StreamCursor.objects.create(consumer="probe-reader", aggregate_id=events[0].aggregate_id, version=0)
    applied: list[int | None] = []
    with transaction.atomic():
        assert apply_in_order("probe-reader", events[0], lambda e: applied.append(e.version)) == 1
        assert apply_in_order("probe-reader", events[0], lambda e: applied.append(e.version)) == 0
    assert applied == [1]
