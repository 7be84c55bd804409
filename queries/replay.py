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

What catch-up, rebuild and lag ask of the database beyond the ORM (the look past a position,
the streams one generation has applied further than another, the events left unapplied) is
asked of the recorder (:mod:`queries.recorder`); this module decides what to apply and where
the checkpoint goes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
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
from .recorder import recorder

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

    The recorder looks (``ProjectionRecorder.scan_gaps``): on PostgreSQL only at events safe
    to read now, so a late-committing event stays ahead of the checkpoint until it commits.
    When ``limit`` gaps are found the checkpoint stops at the last of them (what lies after it
    is looked at again by the next batch).
    """
    found = recorder().scan_gaps(
        projection.consumer(generation),
        sorted(projection.event_types),
        position,
        limit=limit,
        scan=scan,
        ripe_before=_ripe_before,
    )
    if found is None:  # nothing safe to read after the checkpoint
        return _Gaps(0, position, [])
    return _ripe_gaps(found.scanned, found.head, found.gaps, limit=limit)


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
    behind = recorder().streams_behind(projection.consumer(new), than=projection.consumer(live))
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
    return recorder().unapplied(projection.consumer(generation), projection.event_types, position)
