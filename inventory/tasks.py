"""Thin Celery entry points of the inventory context."""

from celery import shared_task

from .handlers import expire_reservations as expire_due_reservations


@shared_task(name="inventory.tasks.expire_reservations", ignore_result=True)
def expire_reservations() -> int:
    """Release held reservations past their deadline (the safety net behind the saga's timeout)."""
    return expire_due_reservations()
