"""Catching up on the whole event store by position, never skipping a late commit.

A BIGSERIAL id is taken when a row is inserted, not when it commits, so a reader that has
seen id 10 can later see id 9 commit. On PostgreSQL each row carries the id of its writing
transaction (``tx xid8``); a reader only takes rows whose transaction is older than every
transaction still running (the snapshot's xmin) and walks them in ``(tx, id)`` order. Those
rows can no longer be joined by an earlier one, so a cursor of ``(tx, id)`` is safe.
On SQLite a single writer commits in id order, so ``id`` alone is the position.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection

from .messages import Message
from .models import StoredEvent
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


def read_after(position: Position, *, limit: int = 1000) -> list[tuple[Position, Message]]:
    """Up to ``limit`` events after ``position`` that are safe to read now, in order."""
    if connection.vendor != "postgresql":
        rows = StoredEvent.objects.filter(id__gt=position.id).order_by("id")[:limit]
        return [(Position(0, row.id), stored_to_message(row)) for row in rows]
    visible = StoredEvent.objects.raw(
        f"SELECT *, tx::text::bigint AS tx_value FROM {StoredEvent._meta.db_table} "
        "WHERE (tx, id) > (%s::text::xid8, %s) "
        "AND tx < pg_snapshot_xmin(pg_current_snapshot()) "
        "ORDER BY tx, id LIMIT %s",
        [str(position.tx), position.id, limit],
    )
    return [(Position(row.tx_value, row.id), stored_to_message(row)) for row in visible]  # type: ignore[attr-defined]


def lag(position: Position) -> int:
    """How many stored events a reader at ``position`` has not read yet (visible or not)."""
    if connection.vendor != "postgresql":
        return StoredEvent.objects.filter(id__gt=position.id).count()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM {StoredEvent._meta.db_table} WHERE (tx, id) > (%s::text::xid8, %s)",
            [str(position.tx), position.id],
        )
        return int(cursor.fetchone()[0])
