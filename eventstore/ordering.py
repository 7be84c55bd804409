"""Applying one aggregate's events in version order, whatever order they arrive in.

Competing consumers and retries can deliver version 5 before version 4. A consumer that
needs order keeps a cursor per stream: an event at or below it was applied already; one
further ahead pulls the missing versions from the event store first.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import connection

from .messages import Message
from .models import StreamCursor
from .store import load_stream


def apply_in_order(consumer: str, message: Message, apply: Callable[[Message], None]) -> int:
    """Apply every not-yet-applied event of ``message``'s stream up to its version.

    Must run inside the handler's transaction; returns how many events were applied.
    """
    if message.version is None:
        raise ValueError("apply_in_order needs an event with a version")
    applied_version = _lock_cursor(consumer, message.aggregate_id)
    if message.version <= applied_version:
        return 0
    if message.version == applied_version + 1:
        pending = [message]
    else:
        pending = load_stream(message.aggregate_id, after_version=applied_version, up_to=message.version)
    for event in pending:
        apply(event)
    StreamCursor.objects.filter(consumer=consumer, aggregate_id=message.aggregate_id).update(
        version=message.version
    )
    return len(pending)


def _lock_cursor(consumer: str, aggregate_id: str) -> int:
    table = StreamCursor._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (consumer, aggregate_id, version) VALUES (%s, %s, 0) "
            "ON CONFLICT (consumer, aggregate_id) DO NOTHING",
            [consumer, aggregate_id],
        )
    return (
        StreamCursor.objects.select_for_update()
        .values_list("version", flat=True)
        .get(consumer=consumer, aggregate_id=aggregate_id)
    )
