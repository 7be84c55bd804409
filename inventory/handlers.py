"""Reservation handlers: lock, decide in the domain, write rows and events in one transaction.

Lock order, everywhere: the reservation row first, then the product rows sorted by
``product_id`` — two reservations touching the same products in any order never deadlock.
No network call happens while the locks are held.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from eventstore.messages import Message, utc_iso
from eventstore.models import StoredEvent
from eventstore.sql import prepared
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
            exists=True,
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
    with _transaction():
        reservation, exists, version = _lock_reservation(order_id)
        return _apply(
            exists=exists,
            reservation=reservation,
            version=version,
            product_ids=product_ids(reservation),
            decide=decide,
            correlation_id=correlation_id,
            causation_id=causation_id,
        )


def _transaction() -> AbstractContextManager[Any]:
    """A transaction, or the caller's one (a command's, opened with its inbox row) as it is.

    No savepoint inside the caller's transaction (two round trips): a decision raises before
    anything is written, and a failed write (a concurrency conflict) leaves the caller's
    transaction to roll back and retry whole, as ``eventstore.handling`` does.
    """
    return nullcontext() if connection.in_atomic_block else transaction.atomic()


def _lock_reservation(order_id: str) -> tuple[Reservation, bool, int]:
    """The reservation of ``order_id`` locked FOR UPDATE, whether its row exists, its stream version.

    With no row yet, the version read before looking makes a first write committed in between
    fail our append (ConcurrencyError, retried) instead of writing twice; with the row locked,
    the stream cannot move (every append to it updates the row in the same transaction).
    """
    if connection.vendor == "postgresql":
        return _lock_reservation_postgresql(order_id)
    version = stream_version(stream_of(order_id))
    row = ReservationRow.objects.select_for_update().filter(order_id=order_id).first()
    if row is None:
        return Reservation(order_id=order_id), False, version
    return _to_domain(row), True, stream_version(stream_of(order_id))


# One round trip: the row locked, the stream version, and whether the row we locked is the one
# this statement's snapshot sees. It is not when the lock waited for a writer that committed
# after the snapshot was taken: the version may then be older than the stream, so it is read
# again (the lock now held, nothing can move it).
_LOCK_RESERVATION_SQL = f"""
WITH locked AS MATERIALIZED (
    SELECT xmin AS row_xmin, items::text AS items, state, expires_at
    FROM {ReservationRow._meta.db_table} WHERE order_id = %(order_id)s
    FOR UPDATE
)
SELECT (SELECT COALESCE(MAX(version), 0) FROM {StoredEvent._meta.db_table} WHERE aggregate_id = %(stream)s),
       locked.items, locked.state, locked.expires_at,
       locked.row_xmin = (SELECT xmin FROM {ReservationRow._meta.db_table} WHERE order_id = %(order_id)s)
FROM (SELECT 1) AS one LEFT JOIN locked ON TRUE
"""


def _lock_reservation_postgresql(order_id: str) -> tuple[Reservation, bool, int]:
    stream = stream_of(order_id)
    with connection.cursor() as cursor:
        cursor.execute(_LOCK_RESERVATION_SQL, {"order_id": uuid.UUID(order_id), "stream": stream})
        version, items, state, expires_at, seen = cursor.fetchone()
    if state is None:
        return Reservation(order_id=order_id), False, version
    if not seen:
        version = stream_version(stream)
    reservation = Reservation(
        order_id=order_id,
        lines=tuple(Line(item["product_id"], int(item["quantity"])) for item in json.loads(items)),
        state=ReservationState(state),
        expires_at=utc_iso(expires_at) if expires_at else "",
    )
    return reservation, True, version


def _apply(
    *,
    exists: bool,
    reservation: Reservation,
    version: int,
    product_ids: Iterable[str] | None,
    decide: Decide,
    correlation_id: str,
    causation_id: str,
) -> ReservationOutcome:
    ids = sorted(product_ids) if product_ids is not None else [line.product_id for line in reservation.lines]
    products = _lock_products(ids) if ids else {}
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
    _save(products, stock, exists, reservation)
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


def _lock_products(product_ids: Sequence[str]) -> dict[str, Product]:
    rows = Product.objects.select_for_update().filter(product_id__in=product_ids).order_by("product_id")
    return {row.product_id: row for row in rows}


def _save(
    products: dict[str, Product], stock: dict[str, Stock], exists: bool, reservation: Reservation
) -> None:
    """Write the moved stock and the reservation row (every append to its stream writes it)."""
    now = timezone.now()
    changed = []
    for product_id, row in products.items():
        level = stock[product_id]
        if (row.available, row.reserved, row.sold) != (level.available, level.reserved, level.sold):
            row.available, row.reserved, row.sold = level.available, level.reserved, level.sold
            row.updated_at = now  # bulk_update skips auto_now
            changed.append(row)
    if connection.vendor == "postgresql":
        _save_postgresql(changed, exists, reservation, now=now)
    else:
        if changed:
            Product.objects.bulk_update(changed, ["available", "reserved", "sold", "updated_at"])
        _save_reservation(exists, reservation, now=now)
    invalidate_on_commit(row.product_id for row in changed)


def _reservation_values(reservation: Reservation) -> dict[str, Any]:
    return {
        "items": [line.as_data() for line in reservation.lines],
        "state": str(reservation.state),
        "expires_at": datetime.fromisoformat(reservation.expires_at) if reservation.expires_at else None,
    }


def _save_reservation(exists: bool, reservation: Reservation, *, now: datetime) -> None:
    """The reservation row in one UPDATE or one INSERT (the portable path: SQLite)."""
    if reservation.state is None:
        return
    values = _reservation_values(reservation)
    if exists:
        ReservationRow.objects.filter(order_id=reservation.order_id).update(**values, updated_at=now)
        return
    try:
        ReservationRow.objects.create(order_id=reservation.order_id, **values, created_at=now, updated_at=now)
    except IntegrityError as exc:
        # Another first write for this order won the race: the caller's transaction rolls back
        # and decides again on its state (no savepoint, as for a clash of event versions).
        raise ConcurrencyError(stream_of(reservation.order_id), -1) from exc


def _save_postgresql(
    changed: list[Product], exists: bool, reservation: Reservation, *, now: datetime
) -> None:
    """The stock of every changed product and the reservation row in one statement.

    The products are updated by a data-modifying WITH (run to completion whatever the main
    statement reads), from one ``VALUES`` row per product; the main statement writes the row.
    """
    if not changed and reservation.state is None:
        return
    quote = connection.ops.quote_name
    sql, params = "", []
    if changed:
        rows = ", ".join(["(%s, %s::integer, %s::integer, %s::integer)"] * len(changed))
        sql = (
            f"WITH stock (product_id, available, reserved, sold) AS (VALUES {rows}), "
            f"moved AS (UPDATE {quote(Product._meta.db_table)} AS product SET available = stock.available, "
            "reserved = stock.reserved, sold = stock.sold, updated_at = %s "
            "FROM stock WHERE product.product_id = stock.product_id) "
        )
        params = [
            value for row in changed for value in (row.product_id, row.available, row.reserved, row.sold)
        ]
        params.append(prepared(Product, "updated_at", now))
    table = quote(ReservationRow._meta.db_table)
    if reservation.state is None:
        sql += "SELECT 1"
    else:
        values = {
            name: prepared(ReservationRow, name, value)
            for name, value in _reservation_values(reservation).items()
        }
        order_id = prepared(ReservationRow, "order_id", reservation.order_id)
        if exists:
            sql += (
                f"UPDATE {table} SET items = %s, state = %s, expires_at = %s, updated_at = %s "
                "WHERE order_id = %s"
            )
            params += [
                values["items"],
                values["state"],
                values["expires_at"],
                prepared(ReservationRow, "updated_at", now),
                order_id,
            ]
        else:
            sql += (
                f"INSERT INTO {table} (order_id, items, state, expires_at, created_at, updated_at) "
                "VALUES (%s, %s, %s, %s, %s, %s)"
            )
            stamp = prepared(ReservationRow, "created_at", now)
            params += [order_id, values["items"], values["state"], values["expires_at"], stamp, stamp]
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
    except IntegrityError as exc:
        if getattr(exc.__cause__, "sqlstate", None) != UNIQUE_VIOLATION:
            raise  # a broken stock invariant (a CHECK constraint) is a bug, not a race
        raise ConcurrencyError(stream_of(reservation.order_id), -1) from exc


UNIQUE_VIOLATION = "23505"


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
