"""Celery tasks: the relay's safety net and outbox pruning (the beat schedule is in settings)."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from .models import OutboxMessage
from .publisher import ConfirmingPublisher
from .relay import relay_until_idle
from .topology import broker_connection


@shared_task(name="eventstore.tasks.relay_outbox", acks_late=True, reject_on_worker_lost=True)
def relay_outbox() -> int:
    """One relay pass (until a batch is short), in case no relay process is running."""
    publisher = ConfirmingPublisher(broker_connection())
    try:
        return relay_until_idle(publisher)
    finally:
        publisher.close()


@shared_task(name="eventstore.tasks.prune_outbox", acks_late=True, reject_on_worker_lost=True)
def prune_outbox() -> int:
    """Delete sent outbox rows older than ``OUTBOX_RETENTION_HOURS``; returns how many."""
    cutoff = timezone.now() - timedelta(hours=settings.OUTBOX_RETENTION_HOURS)
    deleted, _ = OutboxMessage.objects.filter(sent_at__lt=cutoff).delete()
    return deleted
