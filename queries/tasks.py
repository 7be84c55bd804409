"""Celery entry points of the queries context (scheduled by CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from celery import shared_task

from .analytics import refresh_views
from .projections import PROJECTIONS
from .replay import catch_up


@shared_task(name="queries.tasks.refresh_analytics", acks_late=True)
def refresh_analytics() -> str | None:
    """Refresh the analytics materialized views concurrently (PostgreSQL; no-op elsewhere)."""
    refreshed = refresh_views()
    return refreshed.isoformat() if refreshed else None


@shared_task(name="queries.tasks.catch_up_projections", acks_late=True)
def catch_up_projections() -> dict[str, int]:
    """Apply any event the bus has not applied, by position; returns events applied per projection."""
    return {name: catch_up(name) for name in PROJECTIONS}
