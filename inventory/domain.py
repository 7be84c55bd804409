"""Stock and reservations as plain Python: the rules, with no Django and no storage.

A product's stock moves between three buckets — ``available``, ``reserved`` (held for an
order) and ``sold`` — whose sum is the stock received. A reservation holds the lines of one
order all or nothing; confirming sells them, releasing gives them back (and restocks what was
sold). Decisions return the typed events of ``inventory.events``; the handlers store them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from .events import (
    InventoryConfirmed,
    InventoryReleased,
    InventoryReservationFailed,
    InventoryReserved,
    ReservationEvent,
    ShortageData,
    StockAdjusted,
    StockLine,
)

PRODUCT_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")

OUT_OF_STOCK = "OUT_OF_STOCK"
EXPIRED = "EXPIRED"


class ReservationState(StrEnum):
    """Where a reservation stands; RELEASED and EXPIRED hold nothing."""

    HELD = "HELD"
    CONFIRMED = "CONFIRMED"
    RELEASED = "RELEASED"
    EXPIRED = "EXPIRED"


class StockError(Exception):
    """A move between buckets that the stock cannot make (a broken invariant, never input)."""


class ReservationConflict(Exception):
    """The reservation is in a state where the asked transition is not possible."""


class ReservationReleased(ReservationConflict):
    """The reservation was released: only the saga's compensation (or a release before the
    reserve) releases one, so a later confirm of it is a stale command."""


@dataclass(frozen=True, slots=True)
class Line:
    """A quantity of one product."""

    product_id: str
    quantity: int

    def as_data(self) -> StockLine:
        """The line as message data."""
        return {"product_id": self.product_id, "quantity": self.quantity}


@dataclass(frozen=True, slots=True)
class Shortage:
    """A product that cannot cover its line."""

    product_id: str
    requested: int
    available: int

    def as_data(self) -> ShortageData:
        """The shortage as message data."""
        return {"product_id": self.product_id, "requested": self.requested, "available": self.available}


@dataclass(slots=True)
class Stock:
    """The three buckets of one product; their sum is the stock received."""

    product_id: str
    available: int = 0
    reserved: int = 0
    sold: int = 0

    @property
    def received(self) -> int:
        """Everything ever put into stock, net of adjustments."""
        return self.available + self.reserved + self.sold

    def move(self, *, source: str, target: str, quantity: int) -> None:
        """Move ``quantity`` units from one bucket to another, never below zero."""
        if quantity < 0 or getattr(self, source) < quantity:
            raise StockError(f"{self.product_id}: cannot move {quantity} from {source} to {target}")
        setattr(self, source, getattr(self, source) - quantity)
        setattr(self, target, getattr(self, target) + quantity)

    def adjust_available(self, new_available: int) -> int:
        """Set ``available`` to an absolute count; returns the difference (the adjustment)."""
        if new_available < 0:
            raise StockError(f"{self.product_id}: available cannot be negative")
        delta = new_available - self.available
        self.available = new_available
        return delta


def merge_lines(lines: Iterable[Line]) -> tuple[Line, ...]:
    """One line per product (quantities summed), in product id order — the lock order."""
    totals: dict[str, int] = {}
    for line in lines:
        totals[line.product_id] = totals.get(line.product_id, 0) + line.quantity
    return tuple(Line(product_id, quantity) for product_id, quantity in sorted(totals.items()))


def shortages(lines: Iterable[Line], stock: Mapping[str, Stock]) -> list[Shortage]:
    """The lines that the available stock cannot cover (an unknown product has 0)."""
    found = []
    for line in lines:
        available = stock[line.product_id].available if line.product_id in stock else 0
        if available < line.quantity:
            found.append(Shortage(line.product_id, line.quantity, available))
    return found


def _move_all(lines: Iterable[Line], stock: Mapping[str, Stock], *, source: str, target: str) -> None:
    for line in lines:
        stock[line.product_id].move(source=source, target=target, quantity=line.quantity)


def _lines_data(lines: Iterable[Line]) -> list[StockLine]:
    return [line.as_data() for line in lines]


@dataclass(slots=True)
class Reservation:
    """The stock held for one order: all its lines or none of them.

    The style of every aggregate here: a command decides and returns events without changing
    anything; :meth:`apply` is the only place the reservation (and the stock it moves) changes.
    """

    order_id: str
    lines: tuple[Line, ...] = ()
    state: ReservationState | None = None
    expires_at: str = ""

    @property
    def holds_stock(self) -> bool:
        """Whether units are reserved or sold for this order."""
        return self.state in (ReservationState.HELD, ReservationState.CONFIRMED)

    # --- commands: decide, return events -------------------------------------------------------

    def reserve(
        self, *, lines: Iterable[Line], expires_at: str, stock: Mapping[str, Stock]
    ) -> list[ReservationEvent]:
        """Hold every line, or none when any is short; a second reserve repeats the outcome."""
        if self.state is not None:
            return [self._repeated_outcome()]
        wanted = merge_lines(lines)
        short = shortages(wanted, stock)
        if short:
            failed = InventoryReservationFailed(
                order_id=self.order_id,
                reason=OUT_OF_STOCK,
                shortages=[shortage.as_data() for shortage in short],
            )
            return [failed]
        return [InventoryReserved(order_id=self.order_id, items=_lines_data(wanted), expires_at=expires_at)]

    def confirm(self, *, stock: Mapping[str, Stock]) -> list[ReservationEvent]:
        """Sell what is held; an expired hold is taken again from available stock if it is there."""
        if self.state == ReservationState.EXPIRED and shortages(self.lines, stock):
            raise ReservationConflict(f"reservation of {self.order_id} expired and stock is gone")
        if self.state == ReservationState.RELEASED:
            raise ReservationReleased(f"reservation of {self.order_id} is RELEASED")
        if self.state not in (ReservationState.HELD, ReservationState.EXPIRED, ReservationState.CONFIRMED):
            raise ReservationConflict(f"reservation of {self.order_id} is {self.state or 'unknown'}")
        return [InventoryConfirmed(order_id=self.order_id, items=_lines_data(self.lines))]

    def release(self, *, reason: str, stock: Mapping[str, Stock]) -> list[ReservationEvent]:
        """Give back what is held and restock what was sold; with nothing held, answer anyway."""
        if not self.holds_stock:
            return [self._released(items=[], reason=reason, restocked=False)]
        restocked = self.state == ReservationState.CONFIRMED
        return [self._released(items=_lines_data(self.lines), reason=reason, restocked=restocked)]

    def expire(self, *, stock: Mapping[str, Stock]) -> list[ReservationEvent]:
        """Give back a hold whose deadline passed (only a HELD reservation expires)."""
        if self.state != ReservationState.HELD:
            return []
        return [self._released(items=_lines_data(self.lines), reason=EXPIRED, restocked=False)]

    # --- state changes: only by applying events ------------------------------------------------

    def apply(self, event: ReservationEvent, *, stock: Mapping[str, Stock]) -> None:
        """Change the reservation, and move the stock of its lines, as ``event`` says.

        A repeated answer (a second reserve, a confirm of a confirmed reservation, a release
        with nothing held) moves nothing. A release with reason ``EXPIRED`` of a held
        reservation is its expiry: the reservation is EXPIRED, not RELEASED (no release
        command carries that reason: the saga's are CANCELLED, COMPENSATION or the order's
        failure reason, an operator's ADMIN).
        """
        match event:
            case InventoryReserved():
                self._on_reserved(event, stock)
            case InventoryConfirmed():
                self._on_confirmed(stock)
            case InventoryReleased():
                self._on_released(event, stock)

    def _on_reserved(self, event: InventoryReserved, stock: Mapping[str, Stock]) -> None:
        if self.state is not None:
            return  # the outcome repeated
        self.lines = tuple(Line(str(item["product_id"]), int(item["quantity"])) for item in event.items)
        _move_all(self.lines, stock, source="available", target="reserved")
        self.state, self.expires_at = ReservationState.HELD, event.expires_at

    def _on_confirmed(self, stock: Mapping[str, Stock]) -> None:
        if self.state == ReservationState.HELD:
            _move_all(self.lines, stock, source="reserved", target="sold")
        elif self.state == ReservationState.EXPIRED:
            _move_all(self.lines, stock, source="available", target="sold")
        self.state = ReservationState.CONFIRMED

    def _on_released(self, event: InventoryReleased, stock: Mapping[str, Stock]) -> None:
        if not self.holds_stock:
            self.state = self.state or ReservationState.RELEASED
            return
        restocked = self.state == ReservationState.CONFIRMED
        _move_all(self.lines, stock, source="sold" if restocked else "reserved", target="available")
        expired = self.state == ReservationState.HELD and event.reason == EXPIRED
        self.state = ReservationState.EXPIRED if expired else ReservationState.RELEASED

    def _repeated_outcome(self) -> ReservationEvent:
        if self.holds_stock:
            return InventoryReserved(
                order_id=self.order_id, items=_lines_data(self.lines), expires_at=self.expires_at
            )
        return self._released(items=[], reason=str(self.state), restocked=False)

    def _released(self, *, items: list[StockLine], reason: str, restocked: bool) -> InventoryReleased:
        return InventoryReleased(order_id=self.order_id, items=items, reason=reason, restocked=restocked)


def stock_adjusted(
    *, product_id: str, name: str, price: Decimal, delta: int, available: int
) -> StockAdjusted:
    """The StockAdjusted event of a product's stream (price as a two-decimal string)."""
    return StockAdjusted(
        product_id=product_id, name=name, price=money(price), delta=delta, available=available
    )


def money(amount: Decimal) -> str:
    """A money amount as the contract writes it: a string with two decimals."""
    return f"{amount.quantize(Decimal('0.01'))}"
