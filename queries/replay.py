"""Replaying the event store into the read models by position: catch-up, rebuild and lag.

Positions come from ``eventstore.reader``, which on PostgreSQL only returns rows whose writing
transaction is older than every running one, in ``(tx, id)`` order: a late-committing event
is read when it commits, never skipped (docs/architecture.md "Write path and delivery").

**Catch-up** is the safety net behind the bus, so it only fills gaps: it looks past its
checkpoint under the same rule, in one statement keeps the events beyond their stream's cursor
(the ones the live projector has not applied) and older than a grace period (younger ones are
on their way through the bus), and loads and applies only those.

**Rebuild** writes generation N+1 beside the live generation N while the API keeps reading N:

1. replay every stored event into N+1 by position, a batch per transaction (no lock held);
2. in one transaction holding the projection's exclusive advisory lock — which pauses the
   live projector for that moment, since every live application holds the shared lock —
   replay what committed meanwhile, then copy in any stream the live projector had applied
   further (an event whose transaction is still below the reader's horizon), then flip the
   active generation and set the checkpoint;
3. after the commit, delete generation N's rows and stream cursors.

Events that arrive later go to N+1 through the bus as usual; a stream cursor per generation
makes every application idempotent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Min, QuerySet
from django.utils import timezone

from eventstore.messages import Message
from eventstore.models import StoredEvent, StreamCursor
from eventstore.reader import Position, read_after
from eventstore.store import load_stream, stored_to_message

from . import cache
from .models import ProjectionState
from .projections import (
    PROJECTIONS,
    Projection,
    apply_event,
    forget_live_generation,
    hold_live_lock,
    state_of,
)

logger = logging.getLogger(__name__)

BATCH = 500
SCAN = 20_000  # events one catch-up statement looks at
Progress = Callable[[int, int], None]


def catch_up(name: str, *, limit: int = BATCH, scan: int = SCAN, max_batches: int = 1000) -> int:
    """Apply to the live generation the events after the checkpoint that it has not applied yet.

    The bus applies almost every event before this runs, so catch-up only fills gaps: one
    statement looks at up to ``scan`` events after the checkpoint and keeps those beyond their
    stream's cursor (at most ``limit``); only they are loaded and applied, and the checkpoint
    moves past everything looked at. A run with nothing to fill costs the same few statements
    however many orders arrived since the last one. Returns how many events it applied
    (a gap the bus fills meanwhile is skipped by the stream cursor, and not counted).
    """
    projection = PROJECTIONS[name]
    applied = 0
    for _ in range(max_batches):
        with transaction.atomic():
            hold_live_lock(projection)
            state, _ = ProjectionState.objects.select_for_update().get_or_create(name=projection.name)
            found = _find_gaps(
                projection,
                state.generation,
                Position.parse(state.position),
                limit=limit,
                scan=scan,
            )
            for message in _load_events(found.gaps):
                applied += apply_event(projection, state.generation, message)
            state.position = str(found.end)
            state.caught_up_at = timezone.now()
            state.save(update_fields=["position", "caught_up_at"])
        if len(found.gaps) < limit and found.scanned < scan:
            break
    return applied


@dataclass(frozen=True, slots=True)
class _Gaps:
    """What one look past the checkpoint found."""

    scanned: int  # events of the projection's types looked at (at most ``scan``)
    end: Position  # the new checkpoint: nothing up to it is left unapplied
    gaps: list[int]  # ids of the events beyond their stream's cursor, in position order


def _find_gaps(
    projection: Projection, generation: int, position: Position, *, limit: int, scan: int
) -> _Gaps:
    """The events after ``position`` the generation has not applied, found in one statement.

    PostgreSQL: only events safe to read now (``eventstore.reader``: older than every running
    transaction, in ``(tx, id)`` order), so a late-committing event stays ahead of the
    checkpoint until it commits. When ``limit`` gaps are found the checkpoint stops at the last
    of them (what lies after it is looked at again by the next batch).
    """
    consumer = projection.consumer(generation)
    types = sorted(projection.event_types)
    if connection.vendor != "postgresql":
        return _find_gaps_by_id(consumer, types, position, limit=limit, scan=scan)
    events, cursors = StoredEvent._meta.db_table, StreamCursor._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "WITH safe AS MATERIALIZED ("
            f"  SELECT id, tx, aggregate_id, version, timestamp FROM {events} "
            "   WHERE (tx, id) > (%s::text::xid8, %s) "
            "   AND tx < pg_snapshot_xmin(pg_current_snapshot()) AND event_type = ANY(%s) "
            "   ORDER BY tx, id LIMIT %s"
            "), gaps AS ("
            "  SELECT s.id, s.tx, s.timestamp FROM safe s "
            f"  LEFT JOIN {cursors} c ON c.consumer = %s AND c.aggregate_id = s.aggregate_id "
            "   WHERE s.version > COALESCE(c.version, 0) ORDER BY s.tx, s.id LIMIT %s"
            ") "
            "SELECT (SELECT count(*) FROM safe), head.tx::text::bigint, head.id, "
            "ARRAY(SELECT id FROM gaps ORDER BY tx, id), "
            "ARRAY(SELECT tx::text::bigint FROM gaps ORDER BY tx, id), "
            "ARRAY(SELECT timestamp <= %s FROM gaps ORDER BY tx, id) "
            "FROM (SELECT tx, id FROM safe ORDER BY tx DESC, id DESC LIMIT 1) head",
            [str(position.tx), position.id, types, scan, consumer, limit, _ripe_before()],
        )
        row = cursor.fetchone()
    if row is None:  # nothing safe to read after the checkpoint
        return _Gaps(0, position, [])
    scanned, head_tx, head_id, gap_ids, gap_txs, ripe = row
    gaps = list(zip((int(i) for i in gap_ids), (int(t) for t in gap_txs), ripe, strict=True))
    return _ripe_gaps(int(scanned), Position(int(head_tx), int(head_id)), gaps, limit=limit)


def _ripe_before() -> datetime:
    """Events written after this are left to the bus, which is delivering them (not gaps yet)."""
    return timezone.now() - timedelta(seconds=settings.PROJECTION_CATCH_UP_GRACE_SECONDS)


def _ripe_gaps(scanned: int, head: Position, gaps: list[tuple[int, int, bool]], *, limit: int) -> _Gaps:
    """The gaps to fill now, and the checkpoint: it never passes an event left unapplied.

    ``gaps`` are (id, tx, ripe) in position order. An unripe gap (younger than the grace) is
    one the live projector is about to apply: applying it here as well would only double the
    work while the bus has a backlog. The checkpoint stops just before the first one, so it and
    everything after it are looked at again next time; with ``limit`` gaps it stops at the last.
    """
    ripe: list[int] = []
    for event_id, tx, is_ripe in gaps:
        if not is_ripe:
            return _Gaps(scanned, Position(tx, event_id - 1), ripe)
        ripe.append(event_id)
    if len(ripe) >= limit:
        return _Gaps(scanned, Position(gaps[-1][1], gaps[-1][0]), ripe)
    return _Gaps(scanned, head, ripe)


def _find_gaps_by_id(consumer: str, types: list[str], position: Position, *, limit: int, scan: int) -> _Gaps:
    """SQLite: one writer commits in id order, so ``id`` alone is the position."""
    looked = list(
        StoredEvent.objects.filter(id__gt=position.id, event_type__in=types)
        .order_by("id")
        .values_list("id", "aggregate_id", "version", "timestamp")[:scan]
    )
    if not looked:
        return _Gaps(0, position, [])
    streams = sorted({aggregate_id for _, aggregate_id, _, _ in looked})
    applied: dict[str, int] = {}
    for start in range(0, len(streams), 500):  # some SQLite builds allow 999 parameters
        cursors = StreamCursor.objects.filter(
            consumer=consumer, aggregate_id__in=streams[start : start + 500]
        )
        applied.update(cursors.values_list("aggregate_id", "version"))
    ripe_before = _ripe_before()
    gaps = [
        (event_id, 0, timestamp <= ripe_before)
        for event_id, stream, version, timestamp in looked
        if version > applied.get(stream, 0)
    ][:limit]
    return _ripe_gaps(len(looked), Position(0, looked[-1][0]), gaps, limit=limit)


def _load_events(ids: list[int]) -> list[Message]:
    """The events with these ids as messages, in the order given."""
    if not ids:
        return []
    rows = StoredEvent.objects.in_bulk(ids)
    return [stored_to_message(rows[event_id]) for event_id in ids]


def _replay(
    projection: Projection, generation: int, position: Position, progress: Progress | None
) -> Position:
    total = StoredEvent.objects.filter(event_type__in=projection.event_types).count()
    done = 0
    while True:
        with transaction.atomic():
            batch = read_after(position, limit=BATCH)
            for next_position, message in batch:
                if message.type in projection.event_types:
                    apply_event(projection, generation, message)
                    done += 1
                position = next_position
        if progress is not None:
            progress(done, max(total, done))
        if len(batch) < BATCH:
            return position


def _reconcile_streams(projection: Projection, *, live: int, new: int) -> int:
    """Bring into generation ``new`` every stream the live projector applied further."""
    table = StreamCursor._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT old.aggregate_id, old.version FROM {table} old "
            f"LEFT JOIN {table} fresh ON fresh.consumer = %s AND fresh.aggregate_id = old.aggregate_id "
            "WHERE old.consumer = %s AND old.version > COALESCE(fresh.version, 0)",
            [projection.consumer(new), projection.consumer(live)],
        )
        behind = cursor.fetchall()
    for aggregate_id, version in behind:
        for message in load_stream(aggregate_id, after_version=version - 1, up_to=version):
            apply_event(projection, new, message)
    return len(behind)


def rebuild(name: str, *, progress: Progress | None = None) -> int:
    """Rebuild projection ``name`` aside and swap it in; returns the rows of the new model."""
    projection = PROJECTIONS[name]
    live = state_of(projection).generation
    new = live + 1
    _drop_generation(projection, new)  # leftovers of an interrupted rebuild
    position = _replay(projection, new, Position(), progress)
    with transaction.atomic():
        hold_live_lock(projection, exclusive=True)
        position = _replay(projection, new, position, None)
        copied = _reconcile_streams(projection, live=live, new=new)
        ProjectionState.objects.filter(pk=projection.name).update(
            generation=new, position=str(position), rebuilt_at=timezone.now()
        )
        forget_live_generation(name)
        transaction.on_commit(lambda: cache.bump(customer_ids=()))
    logger.info("projection rebuilt", extra={"projection": name, "generation": new, "copied": copied})
    _drop_generation(projection, live)
    return count_rows(name, new)


def _drop_generation(projection: Projection, generation: int) -> None:
    with transaction.atomic():
        projection.clear(generation)
        StreamCursor.objects.filter(consumer=projection.consumer(generation)).delete()


def count_rows(name: str, generation: int) -> int:
    """How many rows a generation of the projection holds (orders or payments)."""
    from .models import OrderReadModel, PaymentReadModel

    model = OrderReadModel if name == "orders" else PaymentReadModel
    return model.objects.filter(generation=generation).count()


@dataclass(frozen=True, slots=True)
class ProjectionLag:
    """How far one projection is behind the event store."""

    projection: str
    events: int
    seconds: float
    checkpoint_events: int


def lag(name: str) -> ProjectionLag:
    """Events of the projection's types not applied yet, the age of the oldest, and the
    checkpoint's distance from the head in events of those types (which also shows a reader
    stalled by a long transaction).
    """
    projection = PROJECTIONS[name]
    state = state_of(projection)
    position = Position.parse(state.position)
    pending = _unapplied(projection, state.generation, position)
    oldest: datetime | None = pending.aggregate(oldest=Min("timestamp"))["oldest"]
    seconds = max(0.0, (timezone.now() - oldest).total_seconds()) if oldest else 0.0
    from eventstore.reader import lag as reader_lag

    return ProjectionLag(
        name, pending.count(), seconds, reader_lag(position, event_types=projection.event_types)
    )


def _unapplied(projection: Projection, generation: int, position: Position) -> QuerySet[StoredEvent]:
    cursors = StreamCursor._meta.db_table
    events = StoredEvent._meta.db_table
    applied = (
        f"{events}.version <= COALESCE((SELECT c.version FROM {cursors} c "
        f"WHERE c.consumer = %s AND c.aggregate_id = {events}.aggregate_id), 0)"
    )
    rows = StoredEvent.objects.filter(event_type__in=projection.event_types)
    if connection.vendor == "postgresql":
        after = f"({events}.tx, {events}.id) > (%s::text::xid8, %s)"
        params = [str(position.tx), position.id]
    else:
        after = f"{events}.id > %s"
        params = [position.id]
    # Our own table names only; every value is a parameter.
    return rows.extra(  # noqa: S610
        where=[after, f"NOT ({applied})"], params=[*params, projection.consumer(generation)]
    )
