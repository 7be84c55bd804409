"""Reservation handlers: load (locked), decide in the domain, record — in one transaction.

The SQL is the recorder's (:mod:`inventory.recorder`), and so is the lock order: reservation
rows first, then product rows sorted by ``product_id``. In a consumer's batch the rows of
every command are locked together before the first decision and written together after the
last one. No network call happens while the locks are held.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from eventstore.messages import Message, utc_iso
from eventstore.store import ConcurrencyError, append, load_stream
from eventstore.unit_of_work import buffer_of

from .bulkhead import reservation_slot
from .domain import PRODUCT_ID_PATTERN, Line, Reservation, ReservationState, Stock
from .events import InventoryReserved, ReservationEvent, StockLine
from .public import CONTEXT
from .recorder import Held, Levels, recorder, stream_of
from .stock_cache import invalidate_on_commit

AGGREGATE_TYPE = "reservation"


class ReservationNotFound(Exception):
    """No reservation exists for this order."""


@dataclass(frozen=True, slots=True)
class ReservationOutcome:
    """What a reservation operation answered, and the events it stored."""

    order_id: str
    state: str | None
    items: list[StockLine]
    expires_at: str | None
    events: list[Message] = field(default_factory=list)

    @property
    def answer(self) -> Message:
        """The event that answers the command."""
        return self.events[-1]

    @property
    def shortages(self) -> list[dict[str, Any]]:
        """The short lines when the reservation failed, else []."""
        return list(self.answer.data.get("shortages", [])) if self.events else []


def default_expiry() -> datetime:
    """When a reservation made without a saga deadline expires (now + SAGA_TIMEOUT)."""
    return timezone.now() + timedelta(seconds=settings.SAGA_TIMEOUT)


def reserve_stock(
    *,
    order_id: str,
    lines: Sequence[Line],
    expires_at: datetime,
    correlation_id: str,
    causation_id: str,
) -> ReservationOutcome:
    """Hold every line for ``order_id`` or none; a repeated reserve answers the existing outcome.

    Raises :class:`~inventory.bulkhead.ReservationBusy` when the process is saturated.
    """
    requested = sorted({line.product_id for line in lines})
    with reservation_slot():
        return _change(
            order_id=order_id,
            # A repeated reserve only repeats its outcome: it needs (and locks) no stock.
            product_ids=lambda reservation: requested if reservation.state is None else (),
            decide=lambda reservation, stock: reservation.reserve(
                lines=lines, expires_at=utc_iso(expires_at), stock=stock
            ),
            correlation_id=correlation_id,
            causation_id=causation_id,
        )


def confirm_reservation(*, order_id: str, correlation_id: str, causation_id: str) -> ReservationOutcome:
    """Sell the units held for ``order_id`` (idempotent once confirmed).

    Raises :class:`ReservationNotFound` or :class:`~inventory.domain.ReservationConflict`.
    """
    return _change(
        order_id=order_id,
        product_ids=_require_existing,
        decide=lambda reservation, stock: reservation.confirm(stock=stock),
        correlation_id=correlation_id,
        causation_id=causation_id,
    )


def release_reservation(
    *, order_id: str, reason: str, correlation_id: str, causation_id: str
) -> ReservationOutcome:
    """Give back what is held (restock what was sold); with nothing held, answer ``items: []``.

    Releasing an unknown order leaves a RELEASED marker so a late reserve cannot hold stock.
    """
    return _change(
        order_id=order_id,
        product_ids=lambda reservation: None if reservation.holds_stock else (),
        decide=lambda reservation, stock: reservation.release(reason=reason, stock=stock),
        correlation_id=correlation_id,
        causation_id=causation_id,
    )


def expire_reservations(*, now: datetime | None = None, limit: int = 200) -> int:
    """Release held reservations whose deadline passed; returns how many expired."""
    now = now or timezone.now()
    expired = 0
    for order_id in recorder().due_reservations(now=now, limit=limit):
        try:
            expired += _expire_one(order_id, now=now)
        except ConcurrencyError:
            continue  # another writer of this reservation got there first; the next sweep looks again
    return expired


def _expire_one(order_id: str, *, now: datetime) -> bool:
    with transaction.atomic():
        held = recorder().lock_due(order_id, now=now)
        if held is None:
            return False
        loaded = _Loaded()
        loaded.reservations[order_id] = held
        _apply(
            loaded,
            held,
            product_ids=None,
            decide=lambda reservation, stock: reservation.expire(stock=stock),
            correlation_id=order_id,
            causation_id=_reserved_event_id(order_id),
        )
        loaded.write()
        return True


# A command of the reservation: decides on it and the stock it would move, returns the events.
Decide = Callable[[Reservation, dict[str, Stock]], list[ReservationEvent]]


class _Loaded:
    """The reservations and stock one transaction loaded (locked), and which of them it changed.

    In a unit of work (a consumer's batch) it is kept in the unit's identity map: the batch's
    preparer fills it with one statement per table, every command decides on the same objects
    (a hot product ordered a hundred times is locked and written once), and it is written once,
    just before the unit's events. Outside a unit (the API, the expiry sweep) it lives for one
    command and is written at its end.
    """

    def __init__(self) -> None:
        self.reservations: dict[str, Held] = {}
        self.stock: dict[str, Stock] = {}
        self.levels: dict[str, Levels] = {}
        self.looked_up: set[str] = set()
        self.changed: dict[str, Held] = {}

    def load(self, *, order_ids: Iterable[str]) -> None:
        """Lock the reservations not loaded yet (before any product: the lock order)."""
        missing = sorted(set(order_ids) - self.reservations.keys())
        if missing:
            self.reservations.update(recorder().lock_reservations(missing))

    def lock_products(self, product_ids: Iterable[str]) -> None:
        """Lock the products not looked up yet (an unknown product is looked up once)."""
        missing = sorted(set(product_ids) - self.looked_up)
        if not missing:
            return
        found = recorder().lock_products(missing)
        self.looked_up.update(missing)
        self.stock.update(found)
        self.levels.update((pid, Levels.of(stock)) for pid, stock in found.items())

    def reservation(self, order_id: str) -> Held:
        """The reservation of ``order_id``, locked (loaded now if the preparer did not)."""
        self.load(order_ids=[order_id])
        return self.reservations[order_id]

    def write(self) -> None:
        """Write the moved stock and the changed reservations (one statement on PostgreSQL)."""
        moved = [s for pid, s in sorted(self.stock.items()) if Levels.of(s) != self.levels[pid]]
        recorder().save(moved, list(self.changed.values()))
        for stock in moved:
            self.levels[stock.product_id] = Levels.of(stock)
        for held in self.changed.values():
            held.exists = True
        self.changed.clear()
        invalidate_on_commit(stock.product_id for stock in moved)


def _loaded() -> tuple[_Loaded, bool]:
    """This transaction's loaded inventory, and whether the unit of work writes it (else the caller)."""
    return buffer_of(_Loaded)


def prepare_batch(messages: Sequence[Message]) -> None:
    """Lock the whole batch's reservations, then its products, with one statement each.

    The products locked are the ones the batch's decisions will move, as the reservations
    stand: what a new order's reserve asks for, and what a confirm or a release of a holding
    reservation moves (a repeated reserve, or a release with nothing held, needs none). A
    command whose data is malformed is skipped here (its handler rejects it); a product the
    batch needs beyond these is locked when its command decides.
    """
    commands: dict[str, list[tuple[str, set[str]]]] = {}
    for message in messages:
        try:
            order_id = str(uuid.UUID(str(message.data["order_id"])))
            items = (message.data.get("items") or []) if message.type == "ReserveInventory" else []
            wanted = {item.get("product_id") for item in items}
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
        valid = {pid for pid in wanted if isinstance(pid, str) and PRODUCT_ID_PATTERN.fullmatch(pid)}
        commands.setdefault(order_id, []).append((message.type, valid))
    if not commands:
        return
    loaded, _ = _loaded()
    # Reserves wait in the bulkhead before piling onto the product rows, one slot per batch.
    reserves = any(message.type == "ReserveInventory" for message in messages)
    with reservation_slot() if reserves else nullcontext():
        loaded.load(order_ids=commands)
        product_ids: set[str] = set()
        for order_id, held in loaded.reservations.items():
            for command, requested in commands.get(order_id, ()):
                product_ids.update(_moved_by(command, held.reservation, requested))
        loaded.lock_products(product_ids)


def _moved_by(command: str, reservation: Reservation, requested: set[str]) -> Iterable[str]:
    """The products ``command`` may move, the reservation standing as it is."""
    state = reservation.state
    if command == "ReserveInventory":
        return requested if state is None else ()
    if command == "ConfirmInventory" and state in (ReservationState.HELD, ReservationState.EXPIRED):
        return [line.product_id for line in reservation.lines]
    if command == "ReleaseInventory" and reservation.holds_stock:
        return [line.product_id for line in reservation.lines]
    return ()


def _change(
    *,
    order_id: str,
    product_ids: Callable[[Reservation], Iterable[str] | None],
    decide: Decide,
    correlation_id: str,
    causation_id: str,
) -> ReservationOutcome:
    with _transaction():
        loaded, buffered = _loaded()
        held = loaded.reservation(order_id)
        outcome = _apply(
            loaded,
            held,
            product_ids=product_ids(held.reservation),
            decide=decide,
            correlation_id=correlation_id,
            causation_id=causation_id,
        )
        if not buffered:
            loaded.write()
        return outcome


def _transaction() -> AbstractContextManager[Any]:
    """A transaction, or the caller's one (a command's, opened with its inbox row) as it is.

    No savepoint inside the caller's transaction (two round trips), and no mark on it either:
    a decision raises before anything is written (the caller may answer and go on), and a
    failed write (a concurrency conflict) leaves the caller's transaction to roll back and
    retry whole, as ``eventstore.handling`` does.
    """
    return nullcontext() if transaction.get_connection().in_atomic_block else transaction.atomic()


def _apply(
    loaded: _Loaded,
    held: Held,
    *,
    product_ids: Iterable[str] | None,
    decide: Decide,
    correlation_id: str,
    causation_id: str,
) -> ReservationOutcome:
    reservation = held.reservation
    ids = sorted(product_ids) if product_ids is not None else [line.product_id for line in reservation.lines]
    loaded.lock_products(ids)
    stock = {pid: loaded.stock[pid] for pid in ids if pid in loaded.stock}
    events = decide(reservation, stock)
    for event in events:
        reservation.apply(event, stock=stock)
    messages = append(
        context=CONTEXT,
        aggregate_type=AGGREGATE_TYPE,
        aggregate_id=stream_of(reservation.order_id),
        expected_version=held.version,
        events=events,
        correlation_id=correlation_id,
        causation_id=causation_id,
    )
    held.version += len(events)
    if reservation.state is not None:
        loaded.changed[reservation.order_id] = held  # every append to its stream writes the row
    return ReservationOutcome(
        order_id=reservation.order_id,
        state=None if reservation.state is None else str(reservation.state),
        items=[line.as_data() for line in reservation.lines],
        expires_at=reservation.expires_at or None,
        events=messages,
    )


def _require_existing(reservation: Reservation) -> Iterable[str] | None:
    if reservation.state is None:
        raise ReservationNotFound(f"no reservation for order {reservation.order_id}")
    # Confirming again, or a released reservation (refused), touches no stock.
    return None if reservation.state in (ReservationState.HELD, ReservationState.EXPIRED) else ()


def _reserved_event_id(order_id: str) -> str:
    """The InventoryReserved event an expiry answers for (its causation)."""
    held = [m for m in load_stream(stream_of(order_id)) if m.type == InventoryReserved.event_type]
    return held[0].message_id if held else ""
