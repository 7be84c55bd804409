"""The reservation bulkhead: a bound on how many reservations one process runs at once.

Reservations lock product rows; letting every worker thread pile onto the same hot rows only
lengthens the lock queue. Past the bound a caller waits a little, then gets a retryable
:class:`ReservationBusy` (the consumer retries the message, the API answers 503).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings

DEFAULT_CONCURRENCY = 8
DEFAULT_WAIT_SECONDS = 2.0

_guard = threading.Lock()
_current: tuple[int, threading.BoundedSemaphore] | None = None


class ReservationBusy(Exception):
    """Every reservation slot of this process stayed taken: try again shortly."""


def _semaphore() -> threading.BoundedSemaphore:
    global _current
    size = max(1, int(getattr(settings, "INVENTORY_RESERVATION_CONCURRENCY", DEFAULT_CONCURRENCY)))
    with _guard:
        # Re-sized only when the setting changes (tests override it); holders release the
        # semaphore they acquired, so a swap never corrupts a count.
        if _current is None or _current[0] != size:
            _current = (size, threading.BoundedSemaphore(size))
        return _current[1]


@contextmanager
def reservation_slot() -> Iterator[None]:
    """Hold one of the process's reservation slots, or raise :class:`ReservationBusy`."""
    semaphore = _semaphore()
    wait = float(getattr(settings, "INVENTORY_RESERVATION_WAIT", DEFAULT_WAIT_SECONDS))
    if not semaphore.acquire(timeout=wait):
        raise ReservationBusy("too many reservations in progress, retry shortly")
    try:
        yield
    finally:
        semaphore.release()
