"""Read-only admin views of the event store, outbox, inbox and dead letters."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from config.admin import ReadOnlyAdmin, holds_model_permission

from .deadletters import AlreadyReplayed, replay_dead_letter
from .models import DeadLetter, InboxMessage, OutboxMessage, StoredEvent


@admin.register(StoredEvent)
class StoredEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "aggregate_type", "aggregate_id", "version", "event_type", "timestamp")
    list_filter = ("aggregate_type", "event_type")
    search_fields = ("aggregate_id", "correlation_id", "=message_id", "trace_id")
    ordering = ("-id",)


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdmin):
    list_display = ("id", "routing_key", "message_id", "created_at", "sent_at", "attempts", "last_error")
    list_filter = ("exchange",)
    search_fields = ("=message_id", "routing_key")
    ordering = ("-id",)


@admin.register(InboxMessage)
class InboxMessageAdmin(ReadOnlyAdmin):
    list_display = ("id", "consumer", "message_type", "message_id", "handled_at")
    list_filter = ("consumer",)
    search_fields = ("=message_id",)
    ordering = ("-id",)


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "consumer",
        "message_type",
        "correlation_id",
        "attempts",
        "created_at",
        "replayed_at",
        "replayed_by",
    )
    list_filter = ("consumer", "message_type")
    search_fields = ("=message_id", "correlation_id")
    actions = ("replay_selected",)

    def has_replay_permission(self, request: HttpRequest) -> bool:
        """Replaying needs eventstore.change_deadletter; the rows themselves stay read-only."""
        return holds_model_permission(request, DeadLetter, "change")

    @admin.action(description="Replay selected dead letters", permissions=["replay"])
    def replay_selected(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        """Send the selected dead letters again through the outbox, recording who did it."""
        by = getattr(request.user, "username", "") or "admin"
        replayed, skipped = 0, 0
        for dead_letter_id in queryset.values_list("id", flat=True):
            try:
                replay_dead_letter(dead_letter_id, by=by)
                replayed += 1
            except AlreadyReplayed:
                skipped += 1
        self.message_user(request, f"Replayed {replayed} dead letters; {skipped} were already replayed.")
        if skipped:
            self.message_user(request, "Already replayed ones were skipped.", level=messages.WARNING)
