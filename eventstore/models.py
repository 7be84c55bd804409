"""Storage of the event store: the append-only event table, the outbox, the inbox and cursors.

On PostgreSQL the event table also has a ``tx xid8`` column defaulting to
``pg_current_xact_id()`` (added by a migration, not modelled here), which lets position
readers avoid skipping rows that commit out of order (see ``eventstore.reader``).
"""

import uuid

from django.db import models
from django.utils import timezone


class StoredEvent(models.Model):
    """One event of one aggregate stream; never updated, never deleted."""

    id = models.BigAutoField(primary_key=True)
    message_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    aggregate_id = models.CharField(max_length=255)
    aggregate_type = models.CharField(max_length=64)
    event_type = models.CharField(max_length=255)
    event_data = models.JSONField()
    version = models.IntegerField()
    timestamp = models.DateTimeField(default=timezone.now)
    correlation_id = models.CharField(max_length=255, blank=True, default="")
    causation_id = models.CharField(max_length=255, blank=True, default="")
    trace_id = models.CharField(max_length=32, blank=True, default="")
    # The version of the event's fields (eventstore.catalogue), not its place in the stream
    # (``version``); a reader upcasts an older one to the current version.
    schema_version = models.PositiveSmallIntegerField(default=1, db_default=1)

    class Meta:
        db_table = "event_store"
        constraints = [
            models.UniqueConstraint(
                fields=["aggregate_id", "version"], name="event_store_aggregate_version_uniq"
            ),
        ]
        indexes = [
            models.Index(fields=["aggregate_id"], name="idx_event_store_aggregate_id"),
            models.Index(fields=["timestamp"], name="idx_event_store_timestamp"),
            models.Index(fields=["event_type"], name="idx_event_store_type"),
        ]

    def __str__(self) -> str:
        return f"{self.aggregate_type}/{self.aggregate_id}@{self.version} {self.event_type}"


class OutboxMessage(models.Model):
    """A message waiting to be published, written in the transaction that caused it."""

    id = models.BigAutoField(primary_key=True)
    message_id = models.UUIDField(db_index=True)
    exchange = models.CharField(max_length=64)
    routing_key = models.CharField(max_length=255)
    body = models.JSONField()
    headers = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)
    claimed_until = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.IntegerField(default=0)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        db_table = "event_outbox"
        indexes = [
            models.Index(
                fields=["id"],
                name="idx_outbox_pending",
                condition=models.Q(sent_at__isnull=True),
            ),
            models.Index(fields=["sent_at"], name="idx_outbox_sent_at"),
        ]

    def __str__(self) -> str:
        return f"{self.routing_key} {self.message_id}"


class InboxMessage(models.Model):
    """A message a consumer has handled; written in the same transaction as its effect."""

    id = models.BigAutoField(primary_key=True)
    consumer = models.CharField(max_length=64)
    message_id = models.UUIDField()
    message_type = models.CharField(max_length=255)
    handled_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "event_inbox"
        constraints = [
            models.UniqueConstraint(
                fields=["consumer", "message_id"], name="event_inbox_consumer_message_uniq"
            ),
        ]
        # Retention (eventstore.retention): each consumer's last handled message, and its rows
        # oldest first.
        indexes = [models.Index(fields=["consumer", "handled_at"], name="event_inbox_consumer_handled")]

    def __str__(self) -> str:
        return f"{self.consumer} {self.message_id}"


class StreamCursor(models.Model):
    """The last version of one aggregate stream that one in-order consumer has applied."""

    id = models.BigAutoField(primary_key=True)
    consumer = models.CharField(max_length=64)
    aggregate_id = models.CharField(max_length=255)
    version = models.IntegerField(default=0)

    class Meta:
        db_table = "event_stream_cursor"
        constraints = [
            models.UniqueConstraint(fields=["consumer", "aggregate_id"], name="event_stream_cursor_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.consumer} {self.aggregate_id}@{self.version}"


class DeadLetter(models.Model):
    """A message that failed every retry; kept for inspection and replay by an ADMIN."""

    id = models.BigAutoField(primary_key=True)
    consumer = models.CharField(max_length=64)
    message_id = models.UUIDField(db_index=True)
    message_type = models.CharField(max_length=255)
    correlation_id = models.CharField(max_length=255, blank=True, default="", db_index=True)
    exchange = models.CharField(max_length=64)
    routing_key = models.CharField(max_length=255)
    body = models.JSONField()
    headers = models.JSONField(default=dict)
    error = models.TextField(blank=True, default="")
    attempts = models.IntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    replayed_at = models.DateTimeField(null=True, blank=True)
    replayed_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        db_table = "event_dead_letter"
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.consumer} {self.message_type} {self.message_id}"
