"""Where the periodic audit leaves its counts for ``/metrics`` (``oms_money_discrepancies``).

The audit reads every order, so it runs on a schedule (``config.audit.tasks.audit_money``, every
minute), never per scrape. Its counts go to the default cache (Redis in the stack mode, shared by
every process; the process's memory in the embedded mode, where the scheduler thread and the web
server share it), and the scrape reads them back (:mod:`config.metrics_state`). An entry older
than ``STALE_AFTER_SECONDS`` expires: the gauge then disappears instead of showing old counts.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.cache import cache

from .money import AuditReport

CACHE_KEY = "audit:money:last"
STALE_AFTER_SECONDS = 600


def store_result(report: AuditReport) -> None:
    """Keep the counts per kind of ``report`` for the scrapes of the next minutes."""
    cache.set(
        CACHE_KEY,
        {"at": time.time(), "by_kind": report.by_kind()},
        timeout=STALE_AFTER_SECONDS,
    )


def stored_result() -> dict[str, Any] | None:
    """``{"at": unix seconds, "by_kind": {kind: count}}`` of the last audit, or None."""
    found = cache.get(CACHE_KEY)
    return found if isinstance(found, dict) else None
