"""The garbage collector of a long-running process, set once its start-up is done.

Python's cyclic collector walks every tracked object of the generation it collects. After
start-up a process holds some 120,000 of them (Django, DRF, the contexts' modules and
classes), and every full collection walked them all again (about 54 ms here), though none of
them ever becomes garbage. While the consumers drained a backlog, 8 to 18 % of their CPU went
to the collector (py-spy ``--native``; docs/performance.md, its sixth round).

:func:`settle` collects what start-up left, then freezes the rest (``gc.freeze()``: moved to a
generation the collector never walks) and runs the youngest collection less often. Every
process that serves (web worker, consumers, relay, Celery) calls it once, after its code is
loaded and before its first message or request.
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger(__name__)

# Allocations (minus deallocations) of tracked objects between two young collections: 700 by
# default. Higher means fewer collections and fewer short-lived objects promoted to the older
# generations only because they were alive at an unlucky moment, but garbage in reference
# cycles lives longer. Measured on the saga consumer while it drained a backlog, the share of
# its CPU in the collector: 7.9 % at 700 (frozen), 4.0 % at 10,000, none at 50,000, where each
# web worker kept about 13 MiB more.
YOUNG_THRESHOLD = 10_000


def settle() -> None:
    """Freeze the objects start-up made and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
    logger.info(
        "garbage collector settled",
        extra={"frozen_objects": gc.get_freeze_count(), "young_threshold": YOUNG_THRESHOLD},
    )
