"""Group commit for POST /api/orders: the orders placed at about the same time share one commit.

The cost of placing an order is per statement and per commit, far more than per row (docs/performance.md
"Latest figures"), so the requests that arrive within a few milliseconds of each other are
written together: one unit of work (eventstore/unit_of_work.py) for the whole batch, one read
of the catalogue, one statement for the Idempotency-Key locks and one for their rows, then
one multi-row INSERT per table (events, outbox, sagas, step attempts, keys) and one commit.
Each request is answered only after that commit: a 202 still means the order is durable.

How a batch forms (leader and followers, no thread of its own): a request that finds no open
batch opens one and leads it; requests arriving while it is open join it. The leader waits
``ORDER_BATCH_WAIT_MS`` (or until ``ORDER_BATCH_MAX`` have joined), closes the batch, writes
it in its own thread and wakes the others with their answers. Requests arriving meanwhile
open the next batch, so batches overlap when writing takes longer than waiting. Because the
leader is one of the requests, there is nothing to start after a fork or to stop at exit,
the number of waiting requests is bounded by the server's own concurrency, and the same path
runs everywhere: under gunicorn's threads, in the embedded mode on SQLite (where the batch
simply holds the database's write lock once for many orders) and in the test client, whose
single thread leads batches of one inside the test's transaction.

One bad order never fails its neighbours: a rejection decided before anything is recorded
(unknown product, a key in use or reused) is that request's answer alone; any other failure
rolls the whole batch back and its placements are retried one by one, each in its own unit,
so each gets the answer it would have got alone.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError
from opentelemetry import context as otel_context

from config.problems import ServiceUnavailable
from eventstore.unit_of_work import unit_of_work
from inventory import public as inventory_public

from . import admission, handlers, idempotency, neighbours

DEFAULT_BATCH_MAX = 200
DEFAULT_BATCH_WAIT_MS = 2.0
DEFAULT_BATCH_WRITERS = 2

# The rejections a placement can meet before it records anything: its own answer, not a
# reason to roll back the orders placed beside it.
REJECTIONS = (
    handlers.UnknownProducts,
    idempotency.KeyReusedWithOtherRequest,
    idempotency.RequestStillRunning,
)


@dataclass(frozen=True, slots=True)
class Placement:
    """A validated request to place an order, with its caller's Idempotency-Key if it sent one."""

    customer_id: str
    lines: tuple[handlers.RequestedLine, ...]
    payment: dict[str, str]
    key: idempotency.KeyedRequest | None = None
    # The request's trace context: its order's events carry the request's trace, whichever
    # request's thread writes the batch.
    trace: otel_context.Context = field(default_factory=otel_context.get_current)


@dataclass(frozen=True, slots=True)
class Answer:
    """What the request is answered: 202 with the new order, or a key's stored answer."""

    status: int
    body: dict[str, Any]

    @property
    def location(self) -> str | None:
        order_id = self.body.get("order_id")
        return f"/api/orders/{order_id}" if order_id else None


Outcome = Answer | BaseException
# Runs a function with one argument on a thread and awaits its result (orders/asgi.py).
SyncRunner = Callable[..., Awaitable[Any]]


def place(placement: Placement) -> Outcome:
    """Place the order in the next batch; its outcome once that batch has committed.

    It first waits for room under the bound on orders in progress (orders/admission.py): the
    outcome is :class:`admission.Overloaded` when none came. Otherwise it is the
    :class:`Answer`, or what placing it alone would have raised:
    :class:`handlers.UnknownProducts`, :class:`idempotency.KeyReusedWithOtherRequest`,
    :class:`idempotency.RequestStillRunning`, or the error that made it fail.
    """
    gate = admission.of_process()
    try:
        gate.admit()
    except admission.Overloaded as exc:
        return exc
    try:
        return _group_commit.submit(placement)
    finally:
        gate.finished()


async def place_async(placement: Placement, run_sync: SyncRunner) -> Outcome:
    """:func:`place` for a request served on an event loop (orders/asgi.py).

    ``run_sync(function, argument)`` runs a batch's writing on a thread and awaits it.
    """
    group = _async_group_commit(run_sync)
    gate = group.admission
    try:
        await gate.admit()
    except admission.Overloaded as exc:
        return exc
    try:
        return await group.submit(placement)
    finally:
        gate.finished()


def place_batch(placements: Sequence[Placement]) -> list[Outcome]:
    """Place ``placements`` in one unit of work; if it fails, place them one by one instead."""
    try:
        return _place_together(placements)
    except ServiceUnavailable as exc:
        # The catalogue's service does not answer (a split deployment): the same 503 for all,
        # without asking it again once per placement.
        return [exc for _ in placements]
    except Exception as exc:  # noqa: BLE001 - each placement gets its own answer below
        if len(placements) == 1:
            return [_alone(placements[0], exc)]
    outcomes: list[Outcome] = []
    for placement in placements:
        try:
            outcomes.extend(_place_together([placement]))
        except Exception as exc:  # noqa: BLE001 - this request's answer
            outcomes.append(_alone(placement, exc))
    return outcomes


def _place_together(placements: Sequence[Placement]) -> list[Outcome]:
    """Load what the batch needs once, decide each placement, and commit them all at once."""
    # Read before the transaction opens: in a split deployment it is a call to the inventory service.
    products = neighbours.catalogue({line.product_id for placement in placements for line in placement.lines})
    with unit_of_work():
        keys = idempotency.Keys([p.key for p in placements if p.key is not None])
        outcomes = [_place_one(placement, products, keys) for placement in placements]
    return outcomes


def _place_one(
    placement: Placement, products: dict[str, inventory_public.ProductInfo], keys: idempotency.Keys
) -> Outcome:
    token = otel_context.attach(placement.trace)
    try:
        return _decide_one(placement, products, keys)
    finally:
        otel_context.detach(token)


def _decide_one(
    placement: Placement, products: dict[str, inventory_public.ProductInfo], keys: idempotency.Keys
) -> Outcome:
    try:
        if placement.key is not None:
            replay = keys.begin(placement.key)
            if replay is not None:
                return Answer(replay.status, replay.body)
        # Through the module attribute: tests hold or crash a placement at this seam.
        order = handlers.place_order(
            customer_id=placement.customer_id,
            lines=placement.lines,
            payment=placement.payment,
            products=products,
        )
    except REJECTIONS as exc:
        return exc
    answer = Answer(202, {"order_id": order.order_id, "status": order.status})
    if placement.key is not None:
        keys.record(placement.key, status=answer.status, body=answer.body)
    return answer


def _alone(placement: Placement, error: Exception) -> BaseException:
    """The answer to a placement that failed in a unit of its own."""
    if isinstance(error, IntegrityError) and placement.key is not None:
        # Its key's row clashed at commit with one committed meanwhile (orders/idempotency.py).
        return idempotency.RequestStillRunning(placement.key.key)
    return error


@dataclass(eq=False)
class _Batch:
    placements: list[Placement] = field(default_factory=list)
    full: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    outcomes: list[Outcome] = field(default_factory=list)


class GroupCommit:
    """Forms batches of placements from concurrent requests (see the module's docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: _Batch | None = None

    def submit(self, placement: Placement) -> Outcome:
        """Join the open batch (or open and lead one) and wait for this placement's outcome."""
        limit = max(1, int(getattr(settings, "ORDER_BATCH_MAX", DEFAULT_BATCH_MAX)))
        with self._lock:
            batch = self._open
            leader = batch is None
            if batch is None:
                batch = self._open = _Batch()
            index = len(batch.placements)
            batch.placements.append(placement)
            if len(batch.placements) >= limit:
                batch.full.set()
                self._open = None  # the next request opens the next batch
        if leader:
            self._lead(batch)
        else:
            batch.done.wait()
        return batch.outcomes[index]

    def _lead(self, batch: _Batch) -> None:
        wait = float(getattr(settings, "ORDER_BATCH_WAIT_MS", DEFAULT_BATCH_WAIT_MS)) / 1000
        try:
            if wait > 0:
                batch.full.wait(wait)
            with self._lock:
                if self._open is batch:
                    self._open = None
            batch.outcomes = place_batch(batch.placements)
        except BaseException as exc:  # never leave a follower waiting
            if len(batch.outcomes) != len(batch.placements):
                batch.outcomes = [exc] * len(batch.placements)
            raise
        finally:
            batch.done.set()


_group_commit = GroupCommit()  # one per process (per worker after a fork: it holds no thread)


class AsyncGroupCommit:
    """Forms batches of the placements of requests served on one event loop.

    The same batches as :class:`GroupCommit`, without a thread per waiting request: a batch
    opens with its first placement and is ready ``ORDER_BATCH_WAIT_MS`` later (or when full);
    at most ``ORDER_BATCH_WRITERS`` batches are written at once, each on a thread of the
    server's (``run_sync``). While they all are busy the open batch keeps growing instead of
    queueing many small ones: under load a batch holds what arrived during one write.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, run_sync: SyncRunner) -> None:
        self._loop = loop
        self._run_sync = run_sync
        self._open: _AsyncBatch | None = None
        self._full: collections.deque[_AsyncBatch] = collections.deque()
        self._busy = 0
        self._writing: set[asyncio.Task[None]] = set()
        # The bound on orders in progress for this loop's requests (orders/admission.py).
        self.admission = admission.AsyncAdmission(loop, run_sync)

    async def submit(self, placement: Placement) -> Outcome:
        """Join the open batch (or open one) and wait for this placement's outcome."""
        batch = self._open
        if batch is None:
            batch = self._open = _AsyncBatch(self._loop.create_future())
            wait = float(getattr(settings, "ORDER_BATCH_WAIT_MS", DEFAULT_BATCH_WAIT_MS)) / 1000
            batch.timer = self._loop.call_later(wait, self._ready, batch)
        index = len(batch.placements)
        batch.placements.append(placement)
        if len(batch.placements) >= max(1, int(getattr(settings, "ORDER_BATCH_MAX", DEFAULT_BATCH_MAX))):
            self._open = None
            if batch.timer is not None:
                batch.timer.cancel()
            self._full.append(batch)
            self._pump()
        # Shielded: a request that goes away does not cancel its neighbours' batch.
        outcomes = await asyncio.shield(batch.outcomes)
        return outcomes[index]

    def _ready(self, batch: _AsyncBatch) -> None:
        batch.timer = None
        batch.ready = True
        self._pump()

    def _pump(self) -> None:
        """Start writing the next batches, as many as there are free writers."""
        writers = max(1, int(getattr(settings, "ORDER_BATCH_WRITERS", DEFAULT_BATCH_WRITERS)))
        while self._busy < writers:
            if self._full:
                batch = self._full.popleft()
            elif self._open is not None and self._open.ready:
                batch, self._open = self._open, None
            else:
                return
            self._busy += 1
            task = self._loop.create_task(self._write(batch))
            self._writing.add(task)  # keep a reference until it is done
            task.add_done_callback(self._writing.discard)

    async def _write(self, batch: _AsyncBatch) -> None:
        try:
            outcomes: list[Outcome] = await self._run_sync(place_batch, batch.placements)
        except BaseException as exc:  # never leave a request waiting
            batch.outcomes.set_exception(exc)
            raise
        else:
            batch.outcomes.set_result(outcomes)
        finally:
            self._busy -= 1
            self._pump()


@dataclass(eq=False)
class _AsyncBatch:
    outcomes: asyncio.Future[list[Outcome]]
    placements: list[Placement] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None
    ready: bool = False  # its wait is over: written as soon as a writer is free


_async_group_commits: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncGroupCommit] = (
    weakref.WeakKeyDictionary()
)


def _async_group_commit(run_sync: SyncRunner) -> AsyncGroupCommit:
    """The group commit of the running event loop (one per loop: one per web worker)."""
    loop = asyncio.get_running_loop()
    found = _async_group_commits.get(loop)
    if found is None:
        found = _async_group_commits[loop] = AsyncGroupCommit(loop, run_sync)
    return found
