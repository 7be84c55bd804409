"""Catching up on the whole event store by position, never skipping a late commit.

A BIGSERIAL id is taken when a row is inserted, not when it commits, so a reader that has
seen id 10 can later see id 9 commit. On PostgreSQL each row carries the id of its writing
transaction (``tx xid8``); a reader only takes rows whose transaction is older than every
transaction still running (the snapshot's xmin) and walks them in ``(tx, id)`` order. Those
rows can no longer be joined by an earlier one, so a cursor of ``(tx, id)`` is safe.
On SQLite a single writer commits in id order, so ``id`` alone is the position.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db import connection

from .messages import Message
from .models import StoredEvent
from .sql import bound_cursor
from .store import stored_to_message


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """A reader's place in the global order: the writing transaction and the row id."""

    tx: int = 0
    id: int = 0

    def __str__(self) -> str:
        return f"{self.tx}:{self.id}"

    @classmethod
    def parse(cls, text: str) -> Position:
        """Inverse of ``str()``; ``""`` is the start."""
        if not text:
            return cls()
        tx, _, row_id = text.partition(":")
        return cls(int(tx), int(row_id))


def read_after(
    position: Position, *, limit: int = 1000, event_types: Iterable[str] | None = None
) -> list[tuple[Position, Message]]:
    """Up to ``limit`` events after ``position`` that are safe to read now, in order.

    With ``event_types``, only events of those types (a reader that keeps the position of the
    last one it got still skips no row: what lies between is of other types).
    """
    types = sorted(event_types) if event_types is not None else None
    if connection.vendor != "postgresql":
        rows = StoredEvent.objects.filter(id__gt=position.id)
        if types is not None:
            rows = rows.filter(event_type__in=types)
        return [(Position(0, row.id), stored_to_message(row)) for row in rows.order_by("id")[:limit]]
    of_types = " AND event_type = ANY(%s)" if types is not None else ""
    visible = StoredEvent.objects.raw(
        f"SELECT *, tx::text::bigint AS tx_value FROM {StoredEvent._meta.db_table} "
        "WHERE (tx, id) > (%s::text::xid8, %s) "
        f"AND tx < pg_snapshot_xmin(pg_current_snapshot()){of_types} "
        "ORDER BY tx, id LIMIT %s",
        [str(position.tx), position.id, *([types] if types is not None else []), limit],
    )
    return [(Position(row.tx_value, row.id), stored_to_message(row)) for row in visible]  # type: ignore[attr-defined]


def lag(position: Position, *, event_types: Iterable[str] | None = None) -> int:
    """How many stored events (of ``event_types``, if given) a reader at ``position`` has not
    read yet, visible or not."""
    types = sorted(event_types) if event_types is not None else None
    if connection.vendor != "postgresql":
        rows = StoredEvent.objects.filter(id__gt=position.id)
        return (rows.filter(event_type__in=types) if types is not None else rows).count()
    of_types = " AND event_type = ANY(%s)" if types is not None else ""
    with bound_cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM {StoredEvent._meta.db_table} "
            f"WHERE (tx, id) > (%s::text::xid8, %s){of_types}",
            [str(position.tx), position.id, *([types] if types is not None else [])],
        )
        return int(cursor.fetchone()[0])
