"""The unit of work: one transaction whose writes are buffered and sent together at its end.

A handler records what it decided (events appended, commands sent, rows inserted); the unit
of work writes all of it when the block ends, one multi-row statement per table, then commits.
A batch of a hundred messages or orders therefore costs a handful of statements, not a
hundred times a handful: on this system the cost of a write path is per statement and per
round trip, far more than per row.

Reads see the unit's own writes where it matters: :func:`eventstore.store.load_stream` adds the
events appended in this unit, and a context keeps the aggregates it loaded (and changed) in
:meth:`UnitOfWork.identity`, writing the changed ones in a :meth:`UnitOfWork.before_flush`
callback. Flush order: those callbacks (they may append or insert more), the buffered inserts
in the order their tables were first written (a parent row before its children), then the
event store's own rows (events, then the outbox rows that carry their positions).

A conflict found at flush (another writer stored the same stream version) raises from the
block like any other error: the whole unit rolls back, and the caller retries or falls back
to one message at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from django.db import transaction
from django.db.models import Model

from .sql import insert_rows

T = TypeVar("T")


class Buffer(Protocol):
    """What a context collects in a unit and writes at its flush."""

    def write(self) -> None: ...


B = TypeVar("B", bound=Buffer)


class UnitOfWork:
    """The buffered writes of one transaction (use :func:`unit_of_work`, not this directly)."""

    def __init__(self) -> None:
        self._identities: dict[Hashable, Any] = {}
        self._callbacks: dict[Hashable, Callable[[], None]] = {}
        self._inserts: dict[tuple[type[Model], tuple[str, ...]], list[Sequence[Any]]] = {}
        self._final: dict[Hashable, Callable[[], None]] = {}
        self.flushed = False

    def identity(self, key: Hashable, load: Callable[[], T]) -> T:
        """The object kept under ``key`` in this unit, loaded by ``load()`` the first time.

        Two messages of one batch about the same aggregate then see one object, each the
        other's changes, and the aggregate is written once.
        """
        if key not in self._identities:
            self._identities[key] = load()
        found: T = self._identities[key]
        return found

    def forget(self, key: Hashable) -> None:
        """Drop ``key`` from the identity map (the next :meth:`identity` loads it again)."""
        self._identities.pop(key, None)

    def before_flush(self, key: Hashable, callback: Callable[[], None]) -> None:
        """Run ``callback`` once at flush, before the inserts (registering a key again is a no-op)."""
        self._callbacks.setdefault(key, callback)

    def insert(self, model: type[Model], names: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Buffer ``rows`` for ``model`` (values in ``names`` order; see ``eventstore.sql``)."""
        if rows:
            self._inserts.setdefault((model, tuple(names)), []).extend(rows)

    def finally_write(self, key: Hashable, callback: Callable[[], None]) -> None:
        """Run ``callback`` once, last of all at flush (the event store's own rows)."""
        self._final.setdefault(key, callback)

    def flush(self) -> None:
        """Write everything buffered; the unit can take no more writes afterwards."""
        # A callback may register another (e.g. a saga's write appends events): run until none is new.
        done: set[Hashable] = set()
        while pending := [key for key in self._callbacks if key not in done]:
            for key in pending:
                done.add(key)
                self._callbacks[key]()
        for (model, names), rows in self._inserts.items():
            insert_rows(model, names, rows)
        self._inserts.clear()
        for callback in self._final.values():
            callback()
        self.flushed = True


class _Current(threading.local):
    unit: UnitOfWork | None = None


_current = _Current()  # per thread, as Django's connections are


def current() -> UnitOfWork | None:
    """The unit of work open in this thread, if any."""
    return _current.unit


def buffer_of(factory: Callable[[], B]) -> tuple[B, bool]:
    """This thread's ``factory()`` buffer: the open unit's one (written at its flush, ``True``),
    or a new one the caller writes itself when no unit is open (``False``)."""
    unit = _current.unit
    if unit is None:
        return factory(), False
    found = unit.identity(factory, factory)
    unit.before_flush(factory, found.write)
    return found, True


@contextmanager
def unit_of_work() -> Iterator[UnitOfWork]:
    """Open a transaction whose writes are buffered and flushed, in one go, just before commit.

    Nested, it joins the outer unit (and its transaction): the outermost one flushes.
    """
    outer = _current.unit
    if outer is not None:
        yield outer
        return
    with transaction.atomic():
        unit = _current.unit = UnitOfWork()
        try:
            yield unit
            unit.flush()
        finally:
            _current.unit = None
