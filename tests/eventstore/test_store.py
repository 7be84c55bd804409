"""The event store on the real PostgreSQL: optimistic concurrency, atomic outbox, gap-free reads."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connection, transaction

from eventstore.messages import Message
from eventstore.models import OutboxMessage, StoredEvent
from eventstore.reader import Position, read_after
from eventstore.store import ConcurrencyError, append
from tests.fixtures.events import untyped_event
from tests.fixtures.stack import wait_until

# The probe context listens to ProbeTouched, so its events go to the outbox too.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("probe")]


def _append_one(stream: str, *, expected_version: int, label: str) -> None:
    append(
        context="probe",
        aggregate_type="probe",
        aggregate_id=stream,
        expected_version=expected_version,
        events=[untyped_event("ProbeTouched", {"by": label})],
    )


def _in_thread(target, *args):  # type: ignore[no-untyped-def]
    """Run ``target`` on its own database connection; returns (thread, outcome dict)."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["result"] = target(*args)
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_two_writers_at_the_same_version_one_wins_the_other_gets_a_concurrency_error() -> None:
    # given a stream at version 0 and two writers that both read version 0
    stream = f"race-{uuid.uuid4()}"
    start = threading.Barrier(2, timeout=10)

    def writer(label: str) -> str:
        start.wait()  # both append at the same moment, on two connections
        with transaction.atomic():
            _append_one(stream, expected_version=0, label=label)
            # hold the transaction so the other writer is blocked on our uncommitted version 1
            threading.Event().wait(0.3)
        return label

    # when both append version 1 concurrently
    runs = [_in_thread(writer, label) for label in ("a", "b")]
    for thread, _ in runs:
        thread.join(timeout=20)

    # then exactly one succeeded and the other got ConcurrencyError
    outcomes = [outcome for _, outcome in runs]
    winners = [o["result"] for o in outcomes if "result" in o]
    errors = [o["error"] for o in outcomes if "error" in o]
    assert len(winners) == 1, outcomes
    assert len(errors) == 1 and isinstance(errors[0], ConcurrencyError), outcomes
    stored = list(StoredEvent.objects.filter(aggregate_id=stream).values_list("version", "event_data"))
    assert stored == [(1, {"by": winners[0]})]
    assert OutboxMessage.objects.filter(body__aggregate_id=stream).count() == 1


def test_an_event_and_its_outbox_row_commit_together() -> None:
    stream = f"atomic-{uuid.uuid4()}"
    with transaction.atomic():
        _append_one(stream, expected_version=0, label="kept")
    event = StoredEvent.objects.get(aggregate_id=stream)
    outbox = OutboxMessage.objects.get(message_id=event.message_id)
    assert outbox.body["aggregate_id"] == stream
    assert outbox.body["version"] == 1
    assert outbox.routing_key == "probe.ProbeTouched"
    assert outbox.sent_at is None


def test_a_rollback_leaves_neither_the_event_nor_its_outbox_row() -> None:
    stream = f"rollback-{uuid.uuid4()}"

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        _append_one(stream, expected_version=0, label="lost")
        assert StoredEvent.objects.filter(aggregate_id=stream).exists()  # visible inside only
        raise Abort

    assert not StoredEvent.objects.filter(aggregate_id=stream).exists()
    assert not OutboxMessage.objects.filter(body__aggregate_id=stream).exists()


def test_append_outside_a_transaction_is_refused() -> None:
    with pytest.raises(RuntimeError):
        _append_one(f"bare-{uuid.uuid4()}", expected_version=0, label="x")


def test_the_position_reader_does_not_skip_a_transaction_that_began_first_and_committed_last() -> None:
    # given the reader's position at the current end of the store
    start = _end_position()
    first, second = f"first-{uuid.uuid4()}", f"second-{uuid.uuid4()}"
    t1_inserted, t1_may_commit = threading.Event(), threading.Event()

    def t1() -> None:
        with transaction.atomic():
            _append_one(first, expected_version=0, label="t1")
            t1_inserted.set()
            assert t1_may_commit.wait(20)

    thread, outcome = _in_thread(t1)
    try:
        assert t1_inserted.wait(10)

        # when T2 inserts after T1 but commits first
        def t2() -> None:
            with transaction.atomic():
                _append_one(second, expected_version=0, label="t2")

        t2_thread, t2_outcome = _in_thread(t2)
        t2_thread.join(10)
        assert "error" not in t2_outcome
        assert StoredEvent.objects.filter(aggregate_id=second).exists()  # committed and visible

        # then the reader does not hand out T2's row past T1's still-open one
        streams = [m.aggregate_id for _, m in read_after(start, limit=10_000)]
        assert second not in streams and first not in streams
    finally:
        t1_may_commit.set()
        thread.join(20)
    assert "error" not in outcome, outcome

    # and once T1 committed the reader gets both, T1's first, none skipped
    def both() -> list[str] | None:
        ours = [
            m.aggregate_id for _, m in read_after(start, limit=10_000) if m.aggregate_id in (first, second)
        ]
        return ours if len(ours) == 2 else None

    assert wait_until(both, timeout=10, message="both rows readable") == [first, second]


def _end_position() -> Position:
    position = Position()
    while batch := read_after(position, limit=10_000):
        position = batch[-1][0]
    return position


def test_an_event_nobody_listens_to_is_stored_but_not_queued() -> None:
    # given no context subscribes to "NobodyListens"
    stream = f"probe-{uuid.uuid4().hex}"
    # when it is appended together with one the probe listens to
    with transaction.atomic():
        append(
            context="probe",
            aggregate_type="probe",
            aggregate_id=stream,
            expected_version=0,
            events=[untyped_event("NobodyListens", {}), untyped_event("ProbeTouched", {})],
        )
    # then both are in the store, and only the listened-to one waits in the outbox
    assert StoredEvent.objects.filter(aggregate_id=stream).count() == 2
    queued = OutboxMessage.objects.filter(body__aggregate_id=stream)
    assert [row.body["type"] for row in queued] == ["ProbeTouched"]


def test_a_unit_of_work_that_raises_writes_nothing_and_later_writes_go_straight_to_the_outbox() -> None:
    from eventstore.unit_of_work import unit_of_work

    stream = f"batch-abort-{uuid.uuid4()}"

    class Abort(Exception):
        pass

    with pytest.raises(Abort), unit_of_work():
        _append_one(stream, expected_version=0, label="lost")
        raise Abort

    assert not OutboxMessage.objects.filter(body__aggregate_id=stream).exists()
    # and the next write outside any unit goes straight to the outbox again
    with transaction.atomic():
        _append_one(stream, expected_version=0, label="kept")
    assert OutboxMessage.objects.filter(body__aggregate_id=stream).count() == 1


def test_reading_by_position_for_some_event_types_returns_only_those_in_order() -> None:
    from eventstore.reader import lag

    stream = f"typed-{uuid.uuid4()}"
    with transaction.atomic():
        append(
            context="probe",
            aggregate_type="probe",
            aggregate_id=stream,
            expected_version=0,
            events=[
                untyped_event(kind, {"n": n}) for n, kind in enumerate(["Wanted", "Other", "Wanted", "Other"])
            ],
        )
    start = Position()

    def mine_visible() -> list[tuple[Position, Message]]:
        # Visible once every older transaction of the server ended (the reader's horizon is
        # cluster-wide, so another database's open transaction delays it a little).
        found = [(p, m) for p, m in read_after(start, limit=10_000) if m.aggregate_id == stream]
        return found if len(found) == 4 else []

    mine = wait_until(mine_visible, timeout=20)
    wanted = [
        (p, m) for p, m in read_after(start, limit=10_000, event_types={"Wanted"}) if m.aggregate_id == stream
    ]

    assert [m.data["n"] for _, m in wanted] == [0, 2]
    assert [p for p, _ in wanted] == [p for p, m in mine if m.type == "Wanted"]
    # from the last one read, nothing of that type is left, though an "Other" follows it
    last = wanted[-1][0]
    assert [m for _, m in read_after(last, event_types={"Wanted"}) if m.aggregate_id == stream] == []
    assert lag(last, event_types={"Wanted"}) == 0
    assert lag(last) >= 1
