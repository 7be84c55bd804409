"""Celery tasks: the relay's safety net and the retention of outbox and inbox (schedule: settings)."""

from __future__ import annotations

from celery import shared_task

from . import retention
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
    """Delete sent outbox rows older than ``OUTBOX_RETENTION_HOURS``, in bounded batches; how many."""
    return retention.prune_outbox()


@shared_task(name="eventstore.tasks.prune_inbox", acks_late=True, reject_on_worker_lost=True)
def prune_inbox() -> int:
    """Delete inbox rows past ``INBOX_RETENTION_DAYS`` that no redelivery can need; how many."""
    return retention.prune_inbox()
