"""The decisions of many charge runners stored in one transaction (group commit).

A charge runner (:mod:`payments.charging`) records a decision after each answer of the gateway:
its events, the projection row (releasing the runner's claim once the payment settles) and
the deletion of the card token. With a pool of runners in the consumer process
(:mod:`payments.charge_pool`) each of those was a transaction of its own, one commit and one
wait for the disk per charge. Here the runners of the process hand their decisions to one
thread, which stores every decision queued meanwhile in one unit of work — one statement per
table and one commit — and wakes each runner with its result; while that commit runs, the
next decisions queue up, so the batches grow with the load and an idle process waits for
nothing.

Nothing changes for a decision's outcome: each is taken on the payment as its runner knows it
(a copy), in the runner's context (its trace and log fields: what it stores continues the
order's trace), and a batch that fails as a whole (a concurrent writer moved one payment's stream,
a database error) is not retried as a batch — each runner then records its own decision
alone, as before, reloading and deciding again on a conflict. Where no pool runs (the API,
the resume task, tests calling the runner) a decision is recorded at once in its own
transaction.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections import deque
from dataclasses import dataclass, field

from config.connections import close_thread_connections, recycle_thread_connections
from eventstore.unit_of_work import unit_of_work

from .domain import Payment
from .handlers import Decision, load_payment, record_releasing, snapshot, store

logger = logging.getLogger(__name__)

MAX_BATCH = 200


@dataclass(eq=False)
class _Decision:
    """One runner's decision waiting to be stored, and what became of it."""

    order_id: str
    decide: Decision
    cause_id: str
    known: Payment | None
    # The runner's context (its trace, baggage and log fields): the decision is stored in it.
    context: contextvars.Context = field(default_factory=contextvars.copy_context)
    done: threading.Event = field(default_factory=threading.Event)
    result: tuple[Payment, bool] | None = None


class GroupRecorder:
    """One thread storing the queued decisions of a process's charge runners together."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[_Decision] = deque()
        self._thread: threading.Thread | None = None
        self._running = False

    @property
    def running(self) -> bool:
        """Whether decisions are stored by the group thread (else each at once, alone)."""
        return self._running

    def start(self) -> None:
        """Start the thread (once)."""
        with self._cond:
            if self._running:
                return
            self._running = True
            self._thread = threading.Thread(target=self._work, name="payment-group-record", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Store what is queued, then stop; later decisions are stored alone."""
        with self._cond:
            self._running = False
            self._cond.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def record(
        self, order_id: str, decide: Decision, *, cause_id: str, known: Payment | None
    ) -> tuple[Payment, bool]:
        """Store ``decide``'s events for ``order_id`` (see :func:`payments.handlers.record_releasing`).

        Returns the payment as stored and whether the runner's claim was released with it.
        """
        pending = _Decision(order_id, decide, cause_id, known)
        with self._cond:
            queued = self._running
            if queued:
                self._queue.append(pending)
                self._cond.notify_all()
        if queued:
            pending.done.wait()
            if pending.result is not None:
                return pending.result
        # No group thread, or its batch failed: alone, with the usual reload on a conflict.
        return record_releasing(order_id, decide, cause_id=cause_id, known=known)

    def _work(self) -> None:
        try:
            while True:
                with self._cond:
                    while self._running and not self._queue:
                        self._cond.wait()
                    if not self._queue:
                        return  # stopped, nothing left
                    batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
                try:
                    _store_together(batch)
                finally:
                    for pending in batch:
                        pending.done.set()
                with contextlib.suppress(Exception):
                    recycle_thread_connections()
        finally:
            # However this thread ends, no runner is left waiting: what is queued, and what
            # comes later, is stored by its runner alone.
            with self._cond:
                self._running = False
                left, self._queue = list(self._queue), deque()
            for pending in left:
                pending.done.set()
            close_thread_connections()


def _store_together(batch: list[_Decision]) -> None:
    """Store a batch's decisions in one unit of work; on any failure, none (each goes alone)."""
    try:
        with unit_of_work():
            results = [pending.context.run(_decide_and_store, pending) for pending in batch]
    except Exception:  # noqa: BLE001 - each runner records its decision alone instead
        logger.info("storing %d charge decisions together failed; each is stored alone", len(batch))
        return
    for pending, result in zip(batch, results, strict=True):
        pending.result = result


def _decide_and_store(pending: _Decision) -> tuple[Payment, bool]:
    """One decision, taken on a copy of the runner's payment, stored in the open unit of work."""
    known = pending.known
    payment = snapshot(known) if known is not None else load_payment(pending.order_id)
    events = pending.decide(payment)
    store(payment, events, cause_id=pending.cause_id, release_claim=True)
    return payment, bool(events) and not payment.in_flight


group_recorder = GroupRecorder()
