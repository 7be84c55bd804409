"""The event store's scrape-time readings: the outbox backlog and the dead letters not replayed.

``config.metrics_state`` turns them into gauges (``oms_outbox_backlog_*``, ``oms_dead_letters``);
the tables stay this package's business. Both queries are covered by partial indexes (unsent
outbox rows and unreplayed dead letters are few).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Min

from .models import DeadLetter, OutboxMessage
from .registry import contexts


@dataclass(frozen=True, slots=True)
class Backlog:
    """Outbox rows not yet published, and when the oldest of them was written (None when none)."""

    messages: int
    oldest_created_at: datetime | None


def outbox_backlog() -> Backlog:
    """The unsent outbox rows: their count and the oldest one's time (one statement)."""
    found = OutboxMessage.objects.filter(sent_at__isnull=True).aggregate(
        n=Count("pk"), oldest=Min("created_at")
    )
    return Backlog(messages=int(found["n"]), oldest_created_at=found["oldest"])


def dead_letters() -> dict[str, int]:
    """``{consumer: dead letters not replayed}``, every consumer present (0 tells "none" from "not read")."""
    from .relay import DEAD_LETTER_CONSUMER  # the relay's own dead letters (rows it could not route)

    counts = dict.fromkeys([*contexts(), DEAD_LETTER_CONSUMER], 0)
    rows = (
        DeadLetter.objects.filter(replayed_at__isnull=True)
        .values("consumer")
        .annotate(n=Count("pk"))
        .order_by()
    )
    counts.update((row["consumer"], int(row["n"])) for row in rows)
    return dict(sorted(counts.items()))
