"""The periodic money audit (beat, every minute): its counts feed ``oms_money_discrepancies``."""

from __future__ import annotations

import logging

from celery import shared_task

from .gauge import store_result
from .money import run_audit

logger = logging.getLogger(__name__)

# Discrepancies written to the log per run (all of them: manage.py audit_money).
LOGGED_LINES = 20


@shared_task(name="config.audit.tasks.audit_money", ignore_result=True)
def audit_money() -> int:
    """Audit everything, store the counts per kind for /metrics; returns how many were found."""
    report = run_audit()
    store_result(report)
    if not report.ok:
        logger.warning(
            "%s\n%s",
            report.summary(),
            "\n".join(item.line() for item in report.discrepancies[:LOGGED_LINES]),
        )
    return len(report.discrepancies)
