"""What other contexts may import from `queries`: names and read-only helpers, nothing else."""

from __future__ import annotations

from typing import Any

CONTEXT = "queries"


def projection_lags() -> list[dict[str, Any]]:
    """Per projection: events not yet applied, seconds behind (age of the oldest of them), and
    how far the catch-up checkpoint is from the head of the store (for metrics and the admin).
    """
    from .projections import PROJECTIONS
    from .replay import lag

    return [
        {
            "projection": item.projection,
            "events": item.events,
            "seconds": item.seconds,
            "checkpoint_events": item.checkpoint_events,
        }
        for item in (lag(name) for name in PROJECTIONS)
    ]
