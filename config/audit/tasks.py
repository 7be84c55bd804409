"""The periodic money audit (beat, every minute): its counts feed ``oms_money_discrepancies``."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from .gauge import store_result
from .money import run_audit

logger = logging.getLogger(__name__)

# Discrepancies written to the log per run (all of them: manage.py audit_money).
LOGGED_LINES = 20


@shared_task(name="config.audit.tasks.audit_money", ignore_result=True)
def audit_money() -> int:
    """Audit the orders of the last ``MONEY_AUDIT_WINDOW`` seconds (all when 0), all stock and every
    pending dead letter; keep the counts per kind for /metrics; returns how many were found."""
    window = float(getattr(settings, "MONEY_AUDIT_WINDOW", 0) or 0)
    since = timezone.now() - timedelta(seconds=window) if window > 0 else None
    report = run_audit(since=since, dead_letters_since=False)
    store_result(report)
    if not report.ok:
        logger.warning(
            "%s\n%s",
            report.summary(),
            "\n".join(item.line() for item in report.discrepancies[:LOGGED_LINES]),
        )
    return len(report.discrepancies)
