"""Celery entry points of the queries context (scheduled by CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

import logging

from celery import shared_task

from eventstore.backlog import working_through_backlog

from .analytics import refresh_views
from .projections import PROJECTIONS
from .public import CONTEXT
from .replay import catch_up

logger = logging.getLogger(__name__)


@shared_task(name="queries.tasks.refresh_analytics", acks_late=True)
def refresh_analytics() -> str | None:
    """Refresh the analytics materialized views concurrently (PostgreSQL; no-op elsewhere)."""
    refreshed = refresh_views()
    return refreshed.isoformat() if refreshed else None


@shared_task(name="queries.tasks.catch_up_projections", acks_late=True)
def catch_up_projections() -> dict[str, int]:
    """Apply any event the bus has not applied, by position; returns events applied per projection.

    Nothing while the live projector works through a backlog (its queue holds ready messages and
    a consumer takes from it): the events older than the grace are then queued, not lost, and
    applying them here would do its work twice and make its batches fail into one-by-one
    handling, just when it is behind. The gaps are filled once the queue has drained, or at
    once when no consumer is there.
    """
    if working_through_backlog(CONTEXT):
        logger.info("projections' catch-up skipped: the live projector is working through a backlog")
        return {}
    return {name: catch_up(name) for name in PROJECTIONS}
