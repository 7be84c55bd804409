"""Applying one aggregate's events in version order, whatever order they arrive in.

Competing consumers and retries can deliver version 5 before version 4. A consumer that
needs order keeps a cursor per stream: an event at or below it was applied already; one
further ahead pulls the missing versions from the event store first.

The usual case — the event is the next one the cursor expects — costs one statement: the
cursor is moved from ``version - 1`` to ``version`` (or created at 1), which also locks it
until the transaction ends, and the event is applied after it in the same transaction, so
the move and the effect commit or roll back together. Anything else (a duplicate, a gap, a
concurrent delivery of the same version) takes the locking path: lock and read the cursor,
then skip, or apply the missing versions and move the cursor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from django.db import connection, transaction

from .messages import Message
from .models import StreamCursor
from .sql import bound_cursor, dialect
from .store import load_slices, load_stream

_TABLE = StreamCursor._meta.db_table

# Version 1 of a stream: create the cursor at 1 (or move a cursor left at 0).
_CLAIM_FIRST = (
    f"INSERT INTO {_TABLE} (consumer, aggregate_id, version) VALUES (%s, %s, 1) "
    f"ON CONFLICT (consumer, aggregate_id) DO UPDATE SET version = 1 WHERE {_TABLE}.version = 0 "
    "RETURNING version"
)
# Any later version: move the cursor only from the version just before it.
_CLAIM_NEXT = (
    f"UPDATE {_TABLE} SET version = %s "
    "WHERE consumer = %s AND aggregate_id = %s AND version = %s RETURNING version"
)
# The locking path: the cursor (created at 0 if missing), locked, when it is behind ``version``;
# no row when it is at or past it (the row is locked all the same).
_LOCK_BEHIND = (
    f"INSERT INTO {_TABLE} (consumer, aggregate_id, version) VALUES (%s, %s, 0) "
    f"ON CONFLICT (consumer, aggregate_id) DO UPDATE SET version = {_TABLE}.version "
    f"WHERE {_TABLE}.version < %s RETURNING version"
)


def apply_in_order(consumer: str, message: Message, apply: Callable[[Message], None]) -> int:
    """Apply every not-yet-applied event of ``message``'s stream up to its version.

    Must run inside the handler's transaction (one is opened when there is none, so the
    cursor never moves without the effect); returns how many events were applied.
    """
    if message.version is None:
        raise ValueError("apply_in_order needs an event with a version")
    if not connection.in_atomic_block:
        with transaction.atomic():
            return apply_in_order(consumer, message, apply)
    if _claim_next(consumer, message.aggregate_id, message.version):
        apply(message)
        return 1
    applied_version = _lock_if_behind(consumer, message.aggregate_id, message.version)
    if applied_version is None:
        return 0
    if message.version == applied_version + 1:
        pending = [message]
    else:
        pending = load_stream(message.aggregate_id, after_version=applied_version, up_to=message.version)
    for event in pending:
        apply(event)
    with bound_cursor() as cursor:
        cursor.execute(
            f"UPDATE {_TABLE} SET version = %s WHERE consumer = %s AND aggregate_id = %s",
            [message.version, consumer, message.aggregate_id],
        )
    return len(pending)


def _claim_next(consumer: str, aggregate_id: str, version: int) -> bool:
    """Move the cursor to ``version`` when it stands just before it (one statement)."""
    with bound_cursor() as cursor:
        if version == 1:
            cursor.execute(_CLAIM_FIRST, [consumer, aggregate_id])
        else:
            cursor.execute(_CLAIM_NEXT, [version, consumer, aggregate_id, version - 1])
        return cursor.fetchone() is not None


def _lock_if_behind(consumer: str, aggregate_id: str, version: int) -> int | None:
    """The locked cursor's version when it is below ``version``, else ``None``."""
    with bound_cursor() as cursor:
        cursor.execute(_LOCK_BEHIND, [consumer, aggregate_id, version])
        row = cursor.fetchone()
    return None if row is None else int(row[0])


def apply_batch_in_order(consumer: str, messages: Sequence[Message], apply: Callable[[Message], None]) -> int:
    """:func:`apply_in_order` for a batch of events of many streams, with a few statements in all.

    The cursors of the batch's streams are created if missing and locked (in stream order, one
    statement), the events each stream lacks up to the batch's highest version are read from the
    store (one statement), applied in version order, and the cursors moved (one statement). An
    event at or below its cursor was applied already and is skipped. This is the path of streams
    a consumer reads only some event types of (its cursor never stands just before the next one
    it gets) and of gaps; inside the caller's transaction. Returns how many events were applied.
    """
    if not dialect().arrays:
        return sum(apply_in_order(consumer, message, apply) for message in messages)
    targets: dict[str, int] = {}
    for message in messages:
        if message.version is None:
            raise ValueError("apply_batch_in_order needs events with a version")
        targets[message.aggregate_id] = max(message.version, targets.get(message.aggregate_id, 0))
    if not targets:
        return 0
    streams = sorted(targets)
    with bound_cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {_TABLE} (consumer, aggregate_id, version) "
            "SELECT %s, stream, 0 FROM unnest(%s::text[]) AS s (stream) ORDER BY stream "
            "ON CONFLICT (consumer, aggregate_id) DO NOTHING",
            [consumer, streams],
        )
        cursor.execute(
            f"SELECT aggregate_id, version FROM {_TABLE} WHERE consumer = %s AND aggregate_id = ANY(%s) "
            "ORDER BY aggregate_id FOR UPDATE",
            [consumer, streams],
        )
        at = {aggregate_id: int(version) for aggregate_id, version in cursor.fetchall()}
    behind = [(stream, at[stream], targets[stream]) for stream in streams if at[stream] < targets[stream]]
    if not behind:
        return 0
    missing = load_slices(behind)
    applied = 0
    for stream, _, _ in behind:
        for event in missing[stream]:
            apply(event)
            applied += 1
    with bound_cursor() as cursor:
        cursor.execute(
            f"UPDATE {_TABLE} AS c SET version = m.version "
            "FROM unnest(%s::text[], %s::integer[]) AS m (stream, version) "
            "WHERE c.consumer = %s AND c.aggregate_id = m.stream",
            [[stream for stream, _, _ in behind], [target for _, _, target in behind], consumer],
        )
    return applied
