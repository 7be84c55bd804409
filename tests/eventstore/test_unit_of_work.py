"""The unit of work on the real PostgreSQL: writes buffered, flushed as one statement per table."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from eventstore.models import OutboxMessage, StoredEvent
from eventstore.store import ConcurrencyError, append, load_stream, send, stream_version
from eventstore.unit_of_work import current, unit_of_work
from tests.fixtures.events import untyped_event

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("probe")]


def _touch(stream: str, version: int, label: str) -> None:
    append(
        context="probe",
        aggregate_type="probe",
        aggregate_id=stream,
        expected_version=version,
        events=[untyped_event("ProbeTouched", {"by": label})],
    )


def _inserts(queries: CaptureQueriesContext, table: str) -> int:
    return sum(1 for q in queries.captured_queries if q["sql"].startswith(f'INSERT INTO "{table}"'))


def test_many_appends_and_sends_are_written_with_one_insert_per_table() -> None:
    # given ten streams touched and a command sent, all in one unit
    streams = [f"uow-{uuid.uuid4()}" for _ in range(10)]
    with CaptureQueriesContext(connection) as queries, unit_of_work():
        for stream in streams:
            _touch(stream, 0, "a")
            _touch(stream, 1, "b")
        send(context="probe", command="ProbePoke", aggregate_type="probe", aggregate_id=streams[0], data={})
        # then nothing is written before the unit ends
        assert not StoredEvent.objects.filter(aggregate_id__in=streams).exists()

    # then the twenty events and their outbox rows are stored with one INSERT each
    assert _inserts(queries, StoredEvent._meta.db_table) == 1
    assert _inserts(queries, OutboxMessage._meta.db_table) == 1
    stored = {e.message_id: e for e in StoredEvent.objects.filter(aggregate_id__in=streams)}
    assert len(stored) == 20
    assert [e.version for e in StoredEvent.objects.filter(aggregate_id=streams[3]).order_by("id")] == [1, 2]
    # and every event's outbox body carries its position in the store
    outbox = OutboxMessage.objects.filter(message_id__in=stored)
    assert outbox.count() == 20
    for row in outbox:
        assert row.body["position"] == stored[row.message_id].id
    assert OutboxMessage.objects.filter(routing_key__endswith="ProbePoke").exists()


def test_reads_inside_the_unit_see_its_own_appends() -> None:
    stream = f"uow-{uuid.uuid4()}"
    with unit_of_work():
        _touch(stream, 0, "a")
        # then the stream as loaded includes the buffered event, and its version moved
        assert [m.data["by"] for m in load_stream(stream)] == ["a"]
        assert stream_version(stream) == 1
        _touch(stream, 1, "b")
        assert [m.version for m in load_stream(stream, after_version=1)] == [2]
    assert [m.data["by"] for m in load_stream(stream)] == ["a", "b"]


def test_a_stale_append_within_the_unit_is_a_concurrency_error() -> None:
    stream = f"uow-{uuid.uuid4()}"
    with pytest.raises(ConcurrencyError), unit_of_work():
        _touch(stream, 0, "a")
        _touch(stream, 0, "b")  # decided on the stream before "a"
    assert not StoredEvent.objects.filter(aggregate_id=stream).exists()


def test_a_conflict_found_at_flush_rolls_the_whole_unit_back() -> None:
    # given a stream another writer already moved to version 1
    taken, other = f"uow-{uuid.uuid4()}", f"uow-{uuid.uuid4()}"
    with unit_of_work():
        _touch(taken, 0, "first writer")

    # when a unit appends version 1 of it again, beside an unrelated stream
    with pytest.raises(ConcurrencyError), unit_of_work():
        _touch(other, 0, "innocent")
        _touch(taken, 0, "second writer")

    # then nothing of that unit is stored, not even the unrelated stream's event or outbox row
    assert not StoredEvent.objects.filter(aggregate_id=other).exists()
    assert StoredEvent.objects.filter(aggregate_id=taken).count() == 1
    assert current() is None


def test_an_error_in_the_block_writes_nothing() -> None:
    stream = f"uow-{uuid.uuid4()}"
    with pytest.raises(RuntimeError), unit_of_work():
        _touch(stream, 0, "a")
        raise RuntimeError("decided to give up")
    assert not StoredEvent.objects.filter(aggregate_id=stream).exists()
    assert not OutboxMessage.objects.filter(body__aggregate_id=stream).exists()


def test_nested_units_join_the_outer_one_and_identity_and_callbacks_run_once() -> None:
    stream = f"uow-{uuid.uuid4()}"
    loads: list[str] = []
    written: list[str] = []

    def load(label: str, n: int) -> dict[str, int]:
        loads.append(label)
        return {"n": n}

    with unit_of_work() as outer:
        with unit_of_work() as inner:
            assert inner is outer
            box = inner.identity(("box", stream), lambda: load("load", 0))
        box["n"] += 1
        assert outer.identity(("box", stream), lambda: load("again", 99))["n"] == 1

        def write_box() -> None:
            written.append("box")
            _touch(stream, 0, f"n={box['n']}")  # a callback may append: it is flushed too

        outer.before_flush("box", write_box)
        outer.before_flush("box", write_box)
        assert not StoredEvent.objects.filter(aggregate_id=stream).exists()  # the inner end wrote nothing
    assert loads == ["load"]
    assert written == ["box"]
    assert [m.data["by"] for m in load_stream(stream)] == ["n=1"]
