"""Charges off the consumer's thread: a bounded pool of threads in a consumer process.

``manage.py consume`` starts the pool (through :class:`payments.apps.PaymentsConfig`) and
drains it when it stops. A ProcessPayment handler hands its charge to the pool after its
transaction committed, so the consumer acks and goes on with the next messages meanwhile.
Where no pool runs (tests calling the handlers, the embedded mode's one dispatcher thread,
one-off commands) the charge runs inline, after commit, as before.

Nothing is lost by running a charge later: the PENDING payment committed with the inbox row
before the charge is handed over, and ``payments.tasks.resume_payments`` finishes payments
left PENDING/UNKNOWN — by a crash with charges queued or running, or by a stop that could
not wait for them.

The decisions the charges record are stored together, many in one transaction, by one more
thread (:mod:`payments.group_record`) that runs as long as the pool does.

A full pool blocks the submitter (backpressure): the consumer takes no more messages until a
charge finishes, so the queue in memory stays bounded and no charge waits for the resume task.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from config.connections import close_thread_connections, recycle_thread_connections

from .group_record import group_recorder

logger = logging.getLogger(__name__)

QUEUED_PER_WORKER = 4


class ChargePool:
    """A fixed number of daemon threads running charges; each keeps its own Django connections.

    A charge goes to the thread that became idle last, and wakes that thread only: on a quiet
    stack one thread runs charge after charge on its open connections, instead of each charge
    taking the next of many threads (and often opening a connection first), and a charge
    never wakes every idle thread to have all but one of them wait again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Submitters wait here for room in the queue, and stop() for the charges to end.
        self._room = threading.Condition(self._lock)
        # The idle threads, each waiting on its own condition; the last to become idle on top.
        self._idle: list[threading.Condition] = []
        self._queue: deque[Callable[[], object]] = deque()
        self._threads: list[threading.Thread] = []
        self._capacity = 0
        self._busy = 0  # running
        self._running = False
        self._draining = False

    @property
    def running(self) -> bool:
        """Whether charges are being handed to the pool (else they run inline)."""
        return self._running

    def start(self, *, workers: int) -> bool:
        """Start ``workers`` threads (none, and charges stay inline, when ``workers`` < 1)."""
        with self._lock:
            if self._running or workers < 1:
                return self._running
            self._capacity = workers * QUEUED_PER_WORKER
            self._threads = [
                threading.Thread(target=self._work, name=f"payment-charge-{n}", daemon=True)
                for n in range(workers)
            ]
            self._running = True
            self._draining = False
        group_recorder.start()
        for thread in self._threads:
            thread.start()
        logger.info("payment charges run on a pool of %d threads", workers)
        return True

    def run(self, charge: Callable[[], object]) -> None:
        """Hand ``charge`` to the pool, waiting while it is full; inline when no pool runs."""
        with self._lock:
            while self._running and not self._draining and len(self._queue) >= self._capacity:
                self._room.wait()
            if self._running and not self._draining:
                self._queue.append(charge)
                if self._idle:
                    self._idle.pop().notify()
                return
        _run_one(charge)

    def stop(self, *, timeout: float) -> int:
        """Finish the queued and running charges, waiting at most ``timeout`` seconds.

        Returns how many were left undone (queued ones not started, running ones abandoned):
        their payments stay PENDING/UNKNOWN for the resume task.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            if not self._running:
                return 0
            self._draining = True
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._room.wait(left)
            dropped = len(self._queue)
            self._queue.clear()
            abandoned = self._busy
            self._running = False
            for idle in self._idle:
                idle.notify()
            self._idle.clear()
            self._room.notify_all()
            threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()) + 1.0)
        group_recorder.stop(timeout=max(0.0, deadline - time.monotonic()) + 1.0)
        if dropped or abandoned:
            logger.warning(
                "stopped with %d charges not started and %d still running; the resume task finishes them",
                dropped,
                abandoned,
            )
        return dropped + abandoned

    def _work(self) -> None:
        wake = threading.Condition(self._lock)
        try:
            while True:
                with self._lock:
                    while self._running and not self._queue:
                        self._idle.append(wake)
                        wake.wait()
                        if wake in self._idle:  # woken by no one who took it off the list
                            self._idle.remove(wake)
                    if not self._queue:
                        return  # stopped
                    charge = self._queue.popleft()
                    self._busy += 1
                    self._room.notify_all()  # a slot is free for a waiting submitter
                try:
                    _run_one(charge)
                finally:
                    recycle_thread_connections()
                    with self._lock:
                        self._busy -= 1
                        self._room.notify_all()  # stop() waits for the running charges
        finally:
            close_thread_connections()


def _run_one(charge: Callable[[], object]) -> None:
    try:
        charge()
    except Exception:
        logger.exception("running a charge failed; the resume task takes it up again")


charge_pool = ChargePool()
