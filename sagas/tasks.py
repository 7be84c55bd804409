"""Thin Celery entry points of the sagas context."""

from celery import shared_task

from . import handlers


@shared_task(name="sagas.tasks.sweep_timeouts", ignore_result=True)
def sweep_timeouts() -> int:
    """Compensate stalled sagas, retry or park stalled compensations (run by beat every second)."""
    return handlers.sweep_timeouts()
