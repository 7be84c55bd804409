"""Celery entry points of the payments context (thin: the work is in :mod:`payments.charging`)."""

from celery import shared_task

from .charging import resume_stalled_payments
from .reconciliation import reconcile_with_gateway


@shared_task(name="payments.tasks.resume_payments", ignore_result=True)
def resume_payments() -> int:
    """Resume payments a crash left PENDING/UNKNOWN, and refunds left waiting; returns how many."""
    return len(resume_stalled_payments())


@shared_task(name="payments.tasks.reconcile_payments", ignore_result=True)
def reconcile_payments() -> dict[str, int]:
    """Compare recent payments with the gateway's ledger and correct late captures."""
    return reconcile_with_gateway()
