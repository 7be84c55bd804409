"""Bounded work in progress: a new order waits while too many orders are still on their way.

Orders accepted faster than the saga pipeline completes them do not complete sooner for it:
they queue in front of every stage, each new one behind all the others, so the time from 202
to COMPLETED grows with the backlog (tens of seconds in the bench's sustained phase), and the
CPU spent accepting them is taken from the stages that would finish them (docs/performance.md).
So the intake holds new placements once the open orders reach ``ORDER_INTAKE_MAX_OPEN``: the
pipeline then always has that much work in hand — enough for full batches — and an order's way
from 202 to COMPLETED stays near ``ORDER_INTAKE_MAX_OPEN`` divided by the pipeline's rate.

- **Open** means a saga that is neither terminal nor parked for an operator
  (``sagas.public.open_saga_count``). Each web process counts at most once every
  ``ORDER_INTAKE_RECOUNT_MS`` and adds its own placements the count may have missed (those
  still being written, and those finished since the count began), so its estimate errs high,
  never low, for its own placements; other processes' placements show at their next count.
- A placement that finds no room waits, first come first served, until a count finds room, for
  at most ``ORDER_INTAKE_HOLD_SECONDS``; then it is refused with 503 and ``Retry-After``
  (:class:`Overloaded`) and nothing is recorded. A client at a fixed concurrency (wrk, a shop's
  checkout) is slowed down instead of refused.
- ``ORDER_INTAKE_MAX_OPEN = 0`` turns the bound off.

:class:`AsyncAdmission` serves a web worker's event loop (orders/asgi.py; each loop's group
commit in orders/intake.py holds one), the requests waiting as futures; :class:`Admission`
serves the threads of Django's request cycle (the DRF view, the embedded mode), each waiting in
its own thread.
"""

from __future__ import annotations

import asyncio
import collections
import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings

from config import metrics
from config.problems import ServiceUnavailable
from sagas import public as sagas_public

SyncRunner = Callable[..., Awaitable[Any]]


class Overloaded(ServiceUnavailable):
    """503: too many orders are in progress; the placement was not recorded."""

    default_detail = "Too many orders are in progress right now."
    default_code = "overloaded"


def _limits() -> tuple[int, float, float]:
    """(the bound, the longest hold in s, the interval between counts in s) from the settings."""
    return (
        int(settings.ORDER_INTAKE_MAX_OPEN),
        float(settings.ORDER_INTAKE_HOLD_SECONDS),
        float(settings.ORDER_INTAKE_RECOUNT_MS) / 1000,
    )


def _overloaded(hold: float) -> Overloaded:
    metrics.ORDERS_REFUSED_BUSY.inc()
    return Overloaded(retry_after=max(1, math.ceil(hold)))


class _Estimate:
    """Open orders as last counted, plus this process's placements the count may have missed:
    those still being placed, and those finished since the count began."""

    def __init__(self) -> None:
        self.counted = 0
        self.in_flight = 0  # admitted, not yet finished (their batch has not committed)
        self.finished = 0  # placements finished, ever
        self.finished_at_count = 0  # ... when the last count began
        self.at = -math.inf  # time.monotonic() of the last count

    def room(self, limit: int) -> bool:
        return self.counted + self.in_flight + (self.finished - self.finished_at_count) < limit

    @property
    def counted_once(self) -> bool:
        return self.at > -math.inf

    def stale(self, interval: float) -> bool:
        return time.monotonic() - self.at >= interval

    def update(self, counted: int, finished_at_start: int) -> None:
        """The result of a count that began when ``finished_at_start`` placements had finished."""
        self.counted = counted
        self.finished_at_count = finished_at_start
        self.at = time.monotonic()


class Admission:
    """The bound for requests served on threads: a waiting request sleeps between counts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._estimate = _Estimate()

    def admit(self) -> None:
        """Return once the placement may join a batch (then call :meth:`finished`); raises
        :class:`Overloaded` after the hold."""
        limit, hold, interval = _limits()
        if limit <= 0:
            with self._lock:
                self._estimate.in_flight += 1
            return
        deadline = time.monotonic() + hold
        held = False
        while True:
            with self._lock:
                if self._estimate.stale(interval):
                    self._estimate.update(sagas_public.open_saga_count(), self._estimate.finished)
                if self._estimate.room(limit):
                    self._estimate.in_flight += 1
                    return
            if not held:
                held = True
                metrics.ORDERS_HELD.inc()
            if time.monotonic() >= deadline:
                raise _overloaded(hold)
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))

    def finished(self) -> None:
        """An admitted placement has its outcome (its order committed, or it was refused)."""
        with self._lock:
            self._estimate.in_flight -= 1
            self._estimate.finished += 1


class AsyncAdmission:
    """The bound for the requests of one event loop: waiting requests are futures, let in in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, run_sync: SyncRunner) -> None:
        self._loop = loop
        self._run_sync = run_sync
        self._estimate = _Estimate()
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._counting: asyncio.Task[None] | None = None

    async def admit(self) -> None:
        """Return once the placement may join a batch (then call :meth:`finished`); raises
        :class:`Overloaded` after the hold."""
        limit, hold, interval = _limits()
        if limit <= 0:
            self._estimate.in_flight += 1
            return
        if self._estimate.stale(interval):
            self._start_counting()
        # A stale estimate that has room admits at once (the count it started corrects the next
        # ones); a process that has never counted waits for its first count.
        if not self._waiting and self._estimate.counted_once and self._estimate.room(limit):
            self._estimate.in_flight += 1
            return
        turn: asyncio.Future[None] = self._loop.create_future()
        self._waiting.append(turn)
        if self._estimate.counted_once:  # not merely this process's first count
            metrics.ORDERS_HELD.inc()
        self._start_counting()
        try:
            await asyncio.wait_for(turn, hold)
        except TimeoutError:
            raise _overloaded(hold) from None

    def finished(self) -> None:
        """An admitted placement has its outcome (its order committed, or it was refused)."""
        self._estimate.in_flight -= 1
        self._estimate.finished += 1

    def _start_counting(self) -> None:
        if self._counting is None or self._counting.done():
            self._counting = self._loop.create_task(self._count_while_waiting())

    async def _count_while_waiting(self) -> None:
        """Count, let in whom there is room for; again every interval while any still wait."""
        while True:
            limit, _, interval = _limits()
            finished_at_start = self._estimate.finished
            try:
                counted = await self._run_sync(sagas_public.open_saga_count)
            except Exception:  # noqa: BLE001 - the database is down: the placements will say so
                counted = 0
            self._estimate.update(counted, finished_at_start)
            self._let_in(limit)
            # Those whose hold ended (or whose client left) wait no more.
            self._waiting = collections.deque(turn for turn in self._waiting if not turn.done())
            if not self._waiting:
                return
            await asyncio.sleep(interval)

    def _let_in(self, limit: int) -> None:
        while self._waiting and (limit <= 0 or self._estimate.room(limit)):
            turn = self._waiting.popleft()
            if not turn.done():  # not gone already (its hold is over, or its client left)
                turn.set_result(None)
                self._estimate.in_flight += 1


_admission = Admission()


def of_process() -> Admission:
    """The bound's gate for this process's request threads (an event loop's is its group commit's)."""
    return _admission
