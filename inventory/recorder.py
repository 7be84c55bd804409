"""The inventory context's SQL, in one place: lock reservations and products, write them back.

Handlers load through a recorder, decide in :mod:`inventory.domain`, and hand the changed
aggregates back to it; nothing else in the context talks to the database for a reservation.
A whole batch of commands costs the same few statements as one command: the reservations
locked together, then the products together, then one statement writing every changed
product and reservation.

Lock order, everywhere: reservation rows first (by ``order_id``), then product rows sorted by
``product_id``; two writers touching the same rows in any order never deadlock.

Two implementations, chosen once (:func:`recorder`): PostgreSQL (one round trip per step,
versions read in the locking statement's snapshot) and a portable one for SQLite (the
embedded mode, one writer at a time: no row locks needed).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connection
from django.utils import timezone

from eventstore.messages import utc_iso
from eventstore.models import StoredEvent
from eventstore.sql import array_insert_statement, bound_cursor, execute_as_one, update_statement
from eventstore.store import ConcurrencyError, stream_versions

from .domain import Line, Reservation, ReservationState, Stock
from .models import Product
from .models import Reservation as ReservationRow


def stream_of(order_id: str) -> str:
    """The reservation stream id of an order."""
    return f"reservation-{order_id}"


@dataclass(slots=True)
class Held:
    """A reservation as loaded under its lock: the aggregate, whether its row exists, its stream version.

    ``version`` moves with every append this transaction makes (read-your-writes: a second
    command about the same order in one batch appends after the first one's events).
    """

    reservation: Reservation
    exists: bool
    version: int


@dataclass(frozen=True, slots=True)
class Levels:
    """A product's buckets as read, to write back only the products a decision moved."""

    available: int
    reserved: int
    sold: int

    @classmethod
    def of(cls, stock: Stock) -> Levels:
        """The current buckets of ``stock``."""
        return cls(stock.available, stock.reserved, stock.sold)


class InventoryRecorder:
    """The portable recorder (SQLite: one writer at a time, so ``FOR UPDATE`` is not needed)."""

    def lock_reservations(self, order_ids: Iterable[str]) -> dict[str, Held]:
        """The reservations of ``order_ids`` locked in ``order_id`` order (a missing one: no row)."""
        ids = sorted(set(order_ids))
        versions = stream_versions([stream_of(order_id) for order_id in ids])
        rows = {
            str(row.order_id): row
            for row in ReservationRow.objects.select_for_update()
            .filter(order_id__in=[uuid.UUID(order_id) for order_id in ids])
            .order_by("order_id")
        }
        return {
            order_id: Held(_to_domain(rows[order_id]), True, versions.get(stream_of(order_id), 0))
            if order_id in rows
            else Held(Reservation(order_id=order_id), False, versions.get(stream_of(order_id), 0))
            for order_id in ids
        }

    def lock_due(self, order_id: str, *, now: datetime) -> Held | None:
        """The reservation of ``order_id`` locked if it is still HELD past its deadline, and free."""
        row = (
            ReservationRow.objects.select_for_update(skip_locked=True)
            .filter(order_id=order_id, state=ReservationState.HELD, expires_at__lte=now)
            .first()
        )
        if row is None:
            return None
        return Held(_to_domain(row), True, stream_versions([stream_of(order_id)]).get(stream_of(order_id), 0))

    def due_reservations(self, *, now: datetime, limit: int) -> list[str]:
        """Held reservations whose deadline passed, the oldest first."""
        return [
            str(order_id)
            for order_id in ReservationRow.objects.filter(state=ReservationState.HELD, expires_at__lte=now)
            .order_by("expires_at")
            .values_list("order_id", flat=True)[:limit]
        ]

    def lock_products(self, product_ids: Iterable[str]) -> dict[str, Stock]:
        """The stock of the known products among ``product_ids``, locked in ``product_id`` order."""
        rows = Product.objects.select_for_update().filter(product_id__in=sorted(set(product_ids)))
        return {
            row.product_id: Stock(row.product_id, row.available, row.reserved, row.sold)
            for row in rows.order_by("product_id")
        }

    def catalogue(self, product_ids: Sequence[str]) -> list[tuple[Any, ...]]:
        """(product_id, name, price, available, reserved) of the known products among ``product_ids``.

        A plain cursor: this runs for every order placed, and the ORM's query building cost
        more than the query. Prices are NUMERIC (Decimal on PostgreSQL; SQLite may hand back
        a float or text: the caller converts them).
        """
        if not product_ids:
            return []
        placeholders = ", ".join(["%s"] * len(product_ids))
        with bound_cursor() as cursor:
            cursor.execute(
                f"SELECT product_id, name, price, available, reserved FROM {Product._meta.db_table} "
                f"WHERE product_id IN ({placeholders})",
                list(product_ids),
            )
            return [tuple(row) for row in cursor.fetchall()]

    def save(self, stock: Sequence[Stock], reservations: Sequence[Held]) -> None:
        """Write the moved stock and the reservations (new rows inserted, the others updated)."""
        now = timezone.now()
        for level in stock:
            Product.objects.filter(product_id=level.product_id).update(
                available=level.available, reserved=level.reserved, sold=level.sold, updated_at=now
            )
        for held in reservations:
            values = _reservation_values(held.reservation)
            if held.exists:
                ReservationRow.objects.filter(order_id=held.reservation.order_id).update(
                    **values, updated_at=now
                )
                continue
            try:
                ReservationRow.objects.create(
                    order_id=held.reservation.order_id, **values, created_at=now, updated_at=now
                )
            except IntegrityError as exc:
                # Another first write for this order won the race: the transaction rolls back
                # and decides again on its state (as for a clash of event versions).
                raise ConcurrencyError(stream_of(held.reservation.order_id), -1) from exc


class PostgresRecorder(InventoryRecorder):
    """PostgreSQL: each step in one round trip, whatever the number of reservations and products."""

    def lock_reservations(self, order_ids: Iterable[str]) -> dict[str, Held]:
        ids = sorted(set(order_ids))
        if not ids:
            return {}
        streams = [stream_of(order_id) for order_id in ids]
        with bound_cursor() as cursor:
            cursor.execute(
                _LOCK_RESERVATIONS, {"ids": [uuid.UUID(order_id) for order_id in ids], "streams": streams}
            )
            rows = cursor.fetchall()
        found: dict[str, Held] = {}
        stale: list[str] = []
        for order_id, version, items, state, expires_at, seen in rows:
            key = str(order_id)
            if state is None:
                found[key] = Held(Reservation(order_id=key), False, int(version))
                continue
            lines = tuple(Line(item["product_id"], int(item["quantity"])) for item in json.loads(items))
            reservation = Reservation(
                order_id=key,
                lines=lines,
                state=ReservationState(state),
                expires_at=utc_iso(expires_at) if expires_at else "",
            )
            found[key] = Held(reservation, True, int(version))
            if not seen:
                stale.append(stream_of(key))
        if stale:
            # Locked after waiting for a writer that committed after our snapshot: the version
            # read with it may be older than the stream. The lock is now held; read it again.
            versions = stream_versions(stale)
            for held in found.values():
                stream = stream_of(held.reservation.order_id)
                if stream in versions:
                    held.version = versions[stream]
        return found

    def lock_products(self, product_ids: Iterable[str]) -> dict[str, Stock]:
        ids = sorted(set(product_ids))
        if not ids:
            return {}
        with bound_cursor() as cursor:
            cursor.execute(
                f"SELECT product_id, available, reserved, sold FROM {Product._meta.db_table} "
                "WHERE product_id = ANY(%s) ORDER BY product_id FOR UPDATE",
                [ids],
            )
            return {
                pid: Stock(pid, available, reserved, sold)
                for pid, available, reserved, sold in cursor.fetchall()
            }

    def save(self, stock: Sequence[Stock], reservations: Sequence[Held]) -> None:
        """Every moved product, changed reservation and new reservation in one statement.

        The products and the existing reservations are updated by data-modifying WITHs (run to
        completion whatever the main statement reads), the new reservations inserted by the
        main statement (a first write that lost a race to another transaction fails on the
        primary key: a :class:`ConcurrencyError`, decided again). Each part reads one array per
        column, so the statement's text is the same for every batch of the same parts: the
        driver parses it once and the server plans it once.
        """
        now = timezone.now()
        statements = []
        if stock:
            moved = [(s.product_id, s.available, s.reserved, s.sold, now) for s in stock]
            statements.append(update_statement(Product, _STOCK, ("product_id",), moved))
        changed = [(*_row(held.reservation), now) for held in reservations if held.exists]
        if changed:
            statements.append(update_statement(ReservationRow, _CHANGED, ("order_id",), changed))
        created = [(*_row(held.reservation), now, now) for held in reservations if not held.exists]
        if created:
            statements.append(array_insert_statement(ReservationRow, _CREATED, created))
        try:
            execute_as_one(statements)
        except IntegrityError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != UNIQUE_VIOLATION:
                raise  # a broken stock invariant (a CHECK constraint) is a bug, not a race
            first = next((held.reservation.order_id for held in reservations if not held.exists), "")
            raise ConcurrencyError(stream_of(first), -1) from exc


# The columns each part of :meth:`PostgresRecorder.save` writes, the key first.
_STOCK = ("product_id", "available", "reserved", "sold", "updated_at")
_CHANGED = ("order_id", "items", "state", "expires_at", "updated_at")
_CREATED = ("order_id", "items", "state", "expires_at", "created_at", "updated_at")

UNIQUE_VIOLATION = "23505"

# One round trip for a batch: the rows locked in order_id order, each stream's version, and
# whether the row we locked is the one this statement's snapshot sees. It is not when the
# lock waited for a writer that committed after the snapshot was taken: that version may then
# be older than the stream, and is read again. With no row, the version read in the snapshot
# that found none makes a first write committed meanwhile fail our append (ConcurrencyError,
# decided again) instead of writing twice; with the row locked the stream cannot move (every
# append to it writes the row in the same transaction).
_LOCK_RESERVATIONS = f"""
WITH locked AS MATERIALIZED (
    SELECT order_id, xmin AS row_xmin, items::text AS items, state, expires_at
    FROM {ReservationRow._meta.db_table} WHERE order_id = ANY(%(ids)s)
    ORDER BY order_id FOR UPDATE
)
SELECT wanted.order_id,
       (SELECT COALESCE(MAX(version), 0) FROM {StoredEvent._meta.db_table}
        WHERE aggregate_id = wanted.stream),
       locked.items, locked.state, locked.expires_at,
       locked.row_xmin = (SELECT xmin FROM {ReservationRow._meta.db_table} AS r
                          WHERE r.order_id = wanted.order_id)
FROM UNNEST(%(ids)s::uuid[], %(streams)s::text[]) AS wanted (order_id, stream)
LEFT JOIN locked ON locked.order_id = wanted.order_id
"""


def _reservation_values(reservation: Reservation) -> dict[str, Any]:
    return {
        "items": [line.as_data() for line in reservation.lines],
        "state": str(reservation.state),
        "expires_at": datetime.fromisoformat(reservation.expires_at) if reservation.expires_at else None,
    }


def _row(reservation: Reservation) -> tuple[Any, ...]:
    """A reservation's (order_id, items, state, expires_at) as the PostgreSQL statement takes them."""
    values = _reservation_values(reservation)
    return (uuid.UUID(reservation.order_id), values["items"], values["state"], values["expires_at"])


def _to_domain(row: ReservationRow) -> Reservation:
    return Reservation(
        order_id=str(row.order_id),
        lines=tuple(Line(item["product_id"], int(item["quantity"])) for item in row.items),
        state=ReservationState(row.state),
        expires_at=utc_iso(row.expires_at) if row.expires_at else "",
    )


_chosen: InventoryRecorder | None = None


def recorder() -> InventoryRecorder:
    """The recorder of this process's database, chosen at its first use (the vendor never changes)."""
    global _chosen
    if _chosen is None:
        _chosen = PostgresRecorder() if connection.vendor == "postgresql" else InventoryRecorder()
    return _chosen
