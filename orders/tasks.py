"""Thin Celery entry points of the orders context."""

from celery import shared_task

from . import idempotency


@shared_task(name="orders.tasks.prune_idempotency_keys", ignore_result=True)
def prune_idempotency_keys() -> int:
    """Forget Idempotency-Keys older than 24 hours."""
    return idempotency.prune()
