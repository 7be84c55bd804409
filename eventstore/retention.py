"""Retention of the transport's bookkeeping: sent outbox rows and old inbox rows are pruned.

Both tables grow with every message, and neither is history: the event store is (and is never
pruned — its rows are the aggregates). Deletes go in batches of ``PRUNE_BATCH_SIZE`` rows, each
its own short transaction, at most ``PRUNE_MAX_BATCHES`` per table and run, so a run never holds
many locks or a long transaction; what a run leaves, the next one takes (beat, every
``PRUNE_EVERY_SECONDS``).

**Outbox**: a row sent more than ``OUTBOX_RETENTION_HOURS`` ago. A sent row is never published
again (the relay and the committing process take only unsent rows); it is kept a while to look
at. Dead letters keep their own copy of the message, so a replay does not need it.

**Inbox**: a row is what makes a redelivered message a duplicate, so it may go only once no
copy of its message can arrive any more. Copies arrive within seconds in normal operation
(retry queues: at most the last ``CONSUMER_RETRY_DELAYS``; an unacked delivery: when its
channel closes; a relay lease: ``RELAY_CLAIM_SECONDS``; a saga resend: within
``SAGA_TIMEOUT``), and ``INBOX_RETENTION_DAYS`` (7) is far beyond all of them. The cases that
could be longer are guarded, not timed:

- a message still to be published (an unsent outbox row with its id: the broker was away, or a
  dead letter's replay waits) keeps every inbox row of that id;
- a dead letter not replayed yet keeps the inbox rows of its message in every other context:
  its replay goes to all of them, and they must drop it;
- a consumer's rows are aged from its own last handled message, not from now: a context whose
  consumers were stopped for longer than the retention, with a delivery unacked in RabbitMQ,
  finds that delivery's row again when it comes back.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core import checks
from django.db import connection, transaction
from django.utils import timezone

from config import metrics

from .models import DeadLetter, InboxMessage, OutboxMessage
from .sql import prepared, table_name


def prune_outbox(*, now: datetime | None = None) -> int:
    """Delete sent outbox rows older than ``OUTBOX_RETENTION_HOURS``; returns how many."""
    cutoff = (now or timezone.now()) - timedelta(hours=settings.OUTBOX_RETENTION_HOURS)
    outbox = table_name(OutboxMessage)
    statement = (
        f"DELETE FROM {outbox} WHERE id IN (SELECT id FROM {outbox} "
        "WHERE sent_at IS NOT NULL AND sent_at < %s ORDER BY sent_at LIMIT %s)"
    )
    deleted = _in_batches(statement, [prepared(OutboxMessage, "sent_at", cutoff)])
    metrics.PRUNED_ROWS.labels(table="outbox").inc(deleted)
    return deleted


def prune_inbox(*, now: datetime | None = None) -> int:
    """Delete inbox rows no copy of whose message can still arrive (see the module); returns how many."""
    retention = timedelta(days=settings.INBOX_RETENTION_DAYS)
    now = now or timezone.now()
    inbox, outbox, dead = table_name(InboxMessage), table_name(OutboxMessage), table_name(DeadLetter)
    statement = (
        f"DELETE FROM {inbox} WHERE id IN (SELECT i.id FROM {inbox} i "
        "WHERE i.consumer = %s AND i.handled_at < %s "
        f"AND NOT EXISTS (SELECT 1 FROM {outbox} o WHERE o.message_id = i.message_id AND o.sent_at IS NULL) "
        f"AND NOT EXISTS (SELECT 1 FROM {dead} d "
        "WHERE d.message_id = i.message_id AND d.replayed_at IS NULL) "
        "ORDER BY i.handled_at LIMIT %s)"
    )
    deleted = 0
    for consumer, last_handled in _consumers():
        cutoff = min(now, last_handled) - retention
        deleted += _in_batches(statement, [consumer, prepared(InboxMessage, "handled_at", cutoff)])
    metrics.PRUNED_ROWS.labels(table="inbox").inc(deleted)
    return deleted


def redelivery_window_seconds() -> float:
    """The longest a timed redelivery can come after a copy was handled, from the settings."""
    retry_delays = sum(float(d) for d in settings.CONSUMER_RETRY_DELAYS)
    return max(retry_delays, float(settings.RELAY_CLAIM_SECONDS), float(settings.SAGA_TIMEOUT))


@checks.register()
def check_inbox_retention(**kwargs: object) -> list[checks.CheckMessage]:
    """``INBOX_RETENTION_DAYS`` of at least a day and far (10x) beyond every redelivery window."""
    seconds = float(settings.INBOX_RETENTION_DAYS) * 86400
    needed = max(86400.0, 10 * redelivery_window_seconds())
    if seconds >= needed:
        return []
    return [
        checks.Error(
            f"INBOX_RETENTION_DAYS={settings.INBOX_RETENTION_DAYS} is too short: inbox rows must outlive "
            f"every redelivery by far ({needed / 86400:.2f} days at least with these settings).",
            id="eventstore.E001",
        )
    ]


def _consumers() -> Iterator[tuple[str, datetime]]:
    """Each consumer of the inbox with the time it last handled a message.

    One index lookup per consumer (``event_inbox_consumer_handled``): no scan of the table.
    """
    inbox = table_name(InboxMessage)
    consumer = ""
    while True:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT min(consumer) FROM {inbox} WHERE consumer > %s", [consumer])
            (found,) = cursor.fetchone()
            if found is None:
                return
            consumer = found
            cursor.execute(f"SELECT max(handled_at) FROM {inbox} WHERE consumer = %s", [consumer])
            (last,) = cursor.fetchone()
        if last is not None:
            yield consumer, _aware(last)


def _aware(value: datetime | str) -> datetime:
    # SQLite answers an aggregate of a datetime column as text.
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=UTC)


def _in_batches(statement: str, params: list[Any]) -> int:
    """Run a ``DELETE … LIMIT %s`` statement until it deletes less than a batch, or the bound."""
    size = int(settings.PRUNE_BATCH_SIZE)
    deleted = 0
    for _ in range(int(settings.PRUNE_MAX_BATCHES)):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement, [*params, size])
            count = max(cursor.rowcount, 0)
        deleted += count
        if count < size:
            break
    return deleted
