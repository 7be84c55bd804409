"""Audit reads of the event store: the dead letters still waiting for an operator."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .models import DeadLetter


@dataclass(frozen=True, slots=True)
class PendingDeadLetter:
    """A message that failed every retry and has not been replayed."""

    id: int
    consumer: str
    message_type: str
    correlation_id: str
    created_at: datetime


def pending_dead_letters(*, since: datetime | None = None) -> list[PendingDeadLetter]:
    """The unreplayed dead letters (recorded at or after ``since``), oldest first."""
    rows = DeadLetter.objects.filter(replayed_at__isnull=True)
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    return [
        PendingDeadLetter(*row)
        for row in rows.order_by("id").values_list(
            "id", "consumer", "message_type", "correlation_id", "created_at"
        )
    ]
