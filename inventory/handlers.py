"""Reservation handlers: lock, decide in the domain, write rows and events in one transaction.

Lock order, everywhere: the reservation row first, then the product rows sorted by
``product_id`` — two reservations touching the same products in any order never deadlock.
No network call happens while the locks are held.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from eventstore.messages import Message, utc_iso
from eventstore.store import ConcurrencyError, NewEvent, append, load_stream, stream_version

from .bulkhead import reservation_slot
from .domain import Line, Reservation, ReservationState, Stock
from .models import Product
from .models import Reservation as ReservationRow
from .public import CONTEXT
from .stock_cache import invalidate_on_commit

AGGREGATE_TYPE = "reservation"


class ReservationNotFound(Exception):
    """No reservation exists for this order."""


@dataclass(frozen=True, slots=True)
class ReservationOutcome:
    """What a reservation operation answered, and the events it stored."""

    order_id: str
    state: str | None
    items: list[dict[str, Any]]
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


def stream_of(order_id: str) -> str:
    """The reservation stream id of an order."""
    return f"reservation-{order_id}"


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
            product_ids=lambda reservation: requested if reservation.state is None else None,
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
        product_ids=lambda reservation: None,
        decide=lambda reservation, stock: reservation.release(reason=reason, stock=stock),
        correlation_id=correlation_id,
        causation_id=causation_id,
    )


def expire_reservations(*, now: datetime | None = None, limit: int = 200) -> int:
    """Release held reservations whose deadline passed; returns how many expired."""
    now = now or timezone.now()
    due = list(
        ReservationRow.objects.filter(state=ReservationState.HELD, expires_at__lte=now)
        .order_by("expires_at")
        .values_list("order_id", flat=True)[:limit]
    )
    expired = 0
    for order_id in due:
        try:
            expired += _expire_one(str(order_id), now=now)
        except ConcurrencyError:
            continue  # another writer of this reservation got there first; the next sweep looks again
    return expired


def _expire_one(order_id: str, *, now: datetime) -> bool:
    with transaction.atomic():
        row = (
            ReservationRow.objects.select_for_update(skip_locked=True)
            .filter(order_id=order_id, state=ReservationState.HELD, expires_at__lte=now)
            .first()
        )
        if row is None:
            return False
        _apply(
            row=row,
            reservation=_to_domain(row),
            version=stream_version(stream_of(order_id)),
            product_ids=None,
            decide=lambda reservation, stock: reservation.expire(stock=stock),
            correlation_id=order_id,
            causation_id=_reserved_event_id(order_id),
        )
        return True


Decide = Callable[[Reservation, dict[str, Stock]], None]


def _change(
    *,
    order_id: str,
    product_ids: Callable[[Reservation], Iterable[str] | None],
    decide: Decide,
    correlation_id: str,
    causation_id: str,
) -> ReservationOutcome:
    with transaction.atomic():
        # With no row yet, the version read before looking makes a first write committed in
        # between fail our append (ConcurrencyError, retried) instead of writing twice; with
        # the row locked, the stream cannot move and its version is read afresh.
        version = stream_version(stream_of(order_id))
        row = ReservationRow.objects.select_for_update().filter(order_id=order_id).first()
        if row is not None:
            version = stream_version(stream_of(order_id))
        reservation = _to_domain(row) if row else Reservation(order_id=order_id)
        return _apply(
            row=row,
            reservation=reservation,
            version=version,
            product_ids=product_ids(reservation),
            decide=decide,
            correlation_id=correlation_id,
            causation_id=causation_id,
        )


def _apply(
    *,
    row: ReservationRow | None,
    reservation: Reservation,
    version: int,
    product_ids: Iterable[str] | None,
    decide: Decide,
    correlation_id: str,
    causation_id: str,
) -> ReservationOutcome:
    ids = sorted(product_ids) if product_ids is not None else [line.product_id for line in reservation.lines]
    products = _lock_products(ids)
    stock = {pid: Stock(pid, p.available, p.reserved, p.sold) for pid, p in products.items()}
    decide(reservation, stock)
    messages = append(
        context=CONTEXT,
        aggregate_type=AGGREGATE_TYPE,
        aggregate_id=stream_of(reservation.order_id),
        expected_version=version,
        events=[NewEvent(event.type, event.data) for event in reservation.collect()],
        correlation_id=correlation_id,
        causation_id=causation_id,
    )
    _save_stock(products, stock)
    _save_reservation(row, reservation)
    return ReservationOutcome(
        order_id=reservation.order_id,
        state=None if reservation.state is None else str(reservation.state),
        items=[line.as_data() for line in reservation.lines],
        expires_at=reservation.expires_at or None,
        events=messages,
    )


def _require_existing(reservation: Reservation) -> None:
    if reservation.state is None:
        raise ReservationNotFound(f"no reservation for order {reservation.order_id}")


def _lock_products(product_ids: Sequence[str]) -> dict[str, Product]:
    rows = Product.objects.select_for_update().filter(product_id__in=product_ids).order_by("product_id")
    return {row.product_id: row for row in rows}


def _save_stock(products: dict[str, Product], stock: dict[str, Stock]) -> None:
    changed = []
    for product_id, row in products.items():
        level = stock[product_id]
        if (row.available, row.reserved, row.sold) != (level.available, level.reserved, level.sold):
            row.available, row.reserved, row.sold = level.available, level.reserved, level.sold
            row.updated_at = timezone.now()  # bulk_update skips auto_now
            changed.append(row)
    if changed:
        Product.objects.bulk_update(changed, ["available", "reserved", "sold", "updated_at"])
        invalidate_on_commit(row.product_id for row in changed)


def _save_reservation(row: ReservationRow | None, reservation: Reservation) -> None:
    if reservation.state is None:
        return
    created = row is None
    row = row or ReservationRow(order_id=reservation.order_id)
    row.items = [line.as_data() for line in reservation.lines]
    row.state = reservation.state.value
    row.expires_at = datetime.fromisoformat(reservation.expires_at) if reservation.expires_at else None
    try:
        with transaction.atomic():
            row.save(force_insert=created)
    except IntegrityError as exc:
        # Another first write for this order won the race: decide again on its state.
        raise ConcurrencyError(stream_of(reservation.order_id), -1) from exc


def _to_domain(row: ReservationRow) -> Reservation:
    return Reservation(
        order_id=str(row.order_id),
        lines=tuple(Line(item["product_id"], int(item["quantity"])) for item in row.items),
        state=ReservationState(row.state),
        expires_at=utc_iso(row.expires_at) if row.expires_at else "",
    )


def _reserved_event_id(order_id: str) -> str:
    """The InventoryReserved event an expiry answers for (its causation)."""
    held = [m for m in load_stream(stream_of(order_id)) if m.type == "InventoryReserved"]
    return held[0].message_id if held else ""
