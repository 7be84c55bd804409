"""Domain tests: given stock and a reservation → a decision → the expected events (no database).

A command returns events and changes nothing; applying them changes the reservation and moves
the stock. :class:`Driven` runs commands the way the handler does (decide, then apply).
"""

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pytest

from eventstore.catalogue import to_data
from inventory.domain import (
    Line,
    Reservation,
    ReservationConflict,
    ReservationState,
    Stock,
    StockError,
    merge_lines,
    stock_adjusted,
)
from inventory.events import ReservationEvent

ORDER = "8d3c1f5e-0000-4000-8000-000000000001"
EXPIRES = "2030-01-01T00:00:00Z"


def _stock(**available: int) -> dict[str, Stock]:
    return {pid: Stock(pid, available=qty) for pid, qty in available.items()}


def _received(stock: dict[str, Stock]) -> dict[str, int]:
    return {pid: level.received for pid, level in stock.items()}


class Driven:
    """A reservation driven as ``inventory.handlers`` drives it: each command's events applied.

    ``collect()`` returns the events of the commands run since the last call.
    """

    def __init__(self, reservation: Reservation) -> None:
        self.reservation = reservation
        self._events: list[ReservationEvent] = []

    @property
    def state(self) -> ReservationState | None:
        return self.reservation.state

    def _run(self, command: str, stock: Mapping[str, Stock], **arguments: Any) -> None:
        events = getattr(self.reservation, command)(stock=stock, **arguments)
        for event in events:
            self.reservation.apply(event, stock=stock)
        self._events += events

    def reserve(self, *, lines: list[Line], expires_at: str, stock: Mapping[str, Stock]) -> None:
        self._run("reserve", stock, lines=lines, expires_at=expires_at)

    def confirm(self, *, stock: Mapping[str, Stock]) -> None:
        self._run("confirm", stock)

    def release(self, *, reason: str, stock: Mapping[str, Stock]) -> None:
        self._run("release", stock, reason=reason)

    def expire(self, *, stock: Mapping[str, Stock]) -> None:
        self._run("expire", stock)

    def collect(self) -> list[ReservationEvent]:
        events, self._events = self._events, []
        return events


def test_a_command_changes_nothing_until_its_events_are_applied() -> None:
    stock = _stock(A=5)
    reservation = Reservation(order_id=ORDER)
    (event,) = reservation.reserve(lines=[Line("A", 2)], expires_at=EXPIRES, stock=stock)
    assert event.event_type == "InventoryReserved"
    assert (reservation.state, reservation.lines, stock["A"].available) == (None, (), 5)
    reservation.apply(event, stock=stock)
    assert (reservation.state, reservation.lines) == (ReservationState.HELD, (Line("A", 2),))
    assert (stock["A"].available, stock["A"].reserved) == (3, 2)
    (confirmed,) = reservation.confirm(stock=stock)
    assert (reservation.state, stock["A"].sold) == (ReservationState.HELD, 0)
    reservation.apply(confirmed, stock=stock)
    assert (reservation.state, stock["A"].reserved, stock["A"].sold) == (ReservationState.CONFIRMED, 0, 2)


def test_reserve_holds_every_line_and_records_inventory_reserved() -> None:
    # given
    stock = _stock(A=5, B=2)
    reservation = Driven(Reservation(order_id=ORDER))
    # when
    reservation.reserve(lines=[Line("B", 2), Line("A", 3)], expires_at=EXPIRES, stock=stock)
    # then
    (event,) = reservation.collect()
    assert event.event_type == "InventoryReserved"
    assert to_data(event) == {
        "order_id": ORDER,
        "items": [{"product_id": "A", "quantity": 3}, {"product_id": "B", "quantity": 2}],
        "expires_at": EXPIRES,
    }
    assert (stock["A"].available, stock["A"].reserved) == (2, 3)
    assert (stock["B"].available, stock["B"].reserved) == (0, 2)
    assert reservation.state == ReservationState.HELD


def test_reserve_is_all_or_nothing_and_names_every_shortage() -> None:
    stock = _stock(A=5, B=1)
    reservation = Driven(Reservation(order_id=ORDER))
    reservation.reserve(lines=[Line("A", 2), Line("B", 2), Line("GHOST", 1)], expires_at=EXPIRES, stock=stock)
    (event,) = reservation.collect()
    assert event.event_type == "InventoryReservationFailed"
    assert to_data(event)["reason"] == "OUT_OF_STOCK"
    assert to_data(event)["shortages"] == [
        {"product_id": "B", "requested": 2, "available": 1},
        {"product_id": "GHOST", "requested": 1, "available": 0},
    ]
    assert (stock["A"].available, stock["A"].reserved) == (5, 0)
    assert reservation.state is None


def test_duplicate_lines_are_merged_before_checking_stock() -> None:
    assert merge_lines([Line("B", 1), Line("A", 2), Line("B", 3)]) == (Line("A", 2), Line("B", 4))
    stock = _stock(B=3)
    reservation = Driven(Reservation(order_id=ORDER))
    reservation.reserve(lines=[Line("B", 2), Line("B", 2)], expires_at=EXPIRES, stock=stock)
    assert reservation.collect()[0].event_type == "InventoryReservationFailed"


def test_second_reserve_repeats_the_outcome_without_holding_twice() -> None:
    stock = _stock(A=5)
    reservation = Driven(Reservation(order_id=ORDER))
    reservation.reserve(lines=[Line("A", 2)], expires_at=EXPIRES, stock=stock)
    reservation.collect()
    reservation.reserve(lines=[Line("A", 2)], expires_at=EXPIRES, stock=stock)
    (event,) = reservation.collect()
    assert event.event_type == "InventoryReserved"
    assert stock["A"].reserved == 2


def test_confirm_sells_what_is_held_and_is_idempotent() -> None:
    stock = _stock(A=5)
    reservation = Driven(Reservation(order_id=ORDER))
    reservation.reserve(lines=[Line("A", 2)], expires_at=EXPIRES, stock=stock)
    reservation.confirm(stock=stock)
    reservation.confirm(stock=stock)
    events = reservation.collect()
    assert [e.event_type for e in events] == ["InventoryReserved", "InventoryConfirmed", "InventoryConfirmed"]
    assert (stock["A"].available, stock["A"].reserved, stock["A"].sold) == (3, 0, 2)
    assert _received(stock) == {"A": 5}


def test_release_of_a_hold_returns_units_to_available() -> None:
    stock = _stock(A=5)
    reservation = Driven(Reservation(order_id=ORDER))
    reservation.reserve(lines=[Line("A", 2)], expires_at=EXPIRES, stock=stock)
    reservation.collect()
    reservation.release(reason="PAYMENT_DECLINED", stock=stock)
    (event,) = reservation.collect()
    assert to_data(event) == {
        "order_id": ORDER,
        "items": [{"product_id": "A", "quantity": 2}],
        "reason": "PAYMENT_DECLINED",
        "restocked": False,
    }
    assert (stock["A"].available, stock["A"].reserved) == (5, 0)


def test_release_after_confirm_restocks_sold_units() -> None:
    stock = _stock(A=5)
    reservation = Driven(Reservation(order_id=ORDER))
    reservation.reserve(lines=[Line("A", 2)], expires_at=EXPIRES, stock=stock)
    reservation.confirm(stock=stock)
    reservation.collect()
    reservation.release(reason="CANCELLED", stock=stock)
    (event,) = reservation.collect()
    assert to_data(event)["restocked"] is True
    assert (stock["A"].available, stock["A"].reserved, stock["A"].sold) == (5, 0, 0)


def test_release_with_nothing_held_answers_empty_items_and_marks_released() -> None:
    reservation = Driven(Reservation(order_id=ORDER))
    reservation.release(reason="TIMEOUT", stock={})
    reservation.release(reason="TIMEOUT", stock={})
    events = reservation.collect()
    assert [to_data(e)["items"] for e in events] == [[], []]
    assert reservation.state == ReservationState.RELEASED
    # a reserve arriving after the release holds nothing
    stock = _stock(A=5)
    reservation.reserve(lines=[Line("A", 1)], expires_at=EXPIRES, stock=stock)
    (event,) = reservation.collect()
    assert event.event_type == "InventoryReleased" and to_data(event)["items"] == []
    assert stock["A"].available == 5


def test_expire_gives_back_a_hold_only() -> None:
    stock = _stock(A=5)
    reservation = Driven(Reservation(order_id=ORDER))
    reservation.reserve(lines=[Line("A", 2)], expires_at=EXPIRES, stock=stock)
    reservation.collect()
    reservation.expire(stock=stock)
    (event,) = reservation.collect()
    assert (event.event_type, to_data(event)["reason"]) == ("InventoryReleased", "EXPIRED")
    assert reservation.state == ReservationState.EXPIRED
    assert (stock["A"].available, stock["A"].reserved) == (5, 0)
    reservation.expire(stock=stock)
    assert reservation.collect() == []


def test_confirm_after_expiry_takes_the_units_again_or_refuses() -> None:
    stock = _stock(A=2)
    reservation = Driven(Reservation(order_id=ORDER))
    reservation.reserve(lines=[Line("A", 2)], expires_at=EXPIRES, stock=stock)
    reservation.expire(stock=stock)
    reservation.confirm(stock=stock)
    assert (stock["A"].available, stock["A"].sold) == (0, 2)

    gone = Driven(Reservation(order_id=ORDER, lines=(Line("A", 1),), state=ReservationState.EXPIRED))
    with pytest.raises(ReservationConflict):
        gone.confirm(stock=_stock(A=0))


def test_confirm_of_a_released_reservation_is_a_conflict() -> None:
    reservation = Driven(Reservation(order_id=ORDER, state=ReservationState.RELEASED))
    with pytest.raises(ReservationConflict):
        reservation.confirm(stock={})


def test_stock_never_goes_below_zero() -> None:
    level = Stock("A", available=1)
    with pytest.raises(StockError):
        level.move(source="available", target="reserved", quantity=2)
    with pytest.raises(StockError):
        level.adjust_available(-1)
    assert level.adjust_available(7) == 6
    assert level.received == 7


def test_stock_adjusted_writes_money_with_two_decimals() -> None:
    event = stock_adjusted(product_id="A", name="Mug", price=Decimal("25"), delta=3, available=3)
    assert to_data(event) == {"product_id": "A", "name": "Mug", "price": "25.00", "delta": 3, "available": 3}
