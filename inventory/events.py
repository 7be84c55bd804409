"""The inventory's events: reservations (stream per order) and stock (stream per product).

Pure Python (no Django): the catalogue entries of the inventory context. Each class's
``event_type`` is the name stored and published, never changed; its fields are exactly the
stored ``event_data`` (``eventstore.catalogue``). Other contexts read these names through
``inventory.public``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, TypedDict

from eventstore.catalogue import Event, register


class StockLine(TypedDict):
    """A quantity of one product."""

    product_id: str
    quantity: int


class ShortageData(TypedDict):
    """A product that could not cover its line."""

    product_id: str
    requested: int
    available: int


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class InventoryReserved(Event):
    event_type: ClassVar[str] = "InventoryReserved"
    order_id: str
    items: list[StockLine]
    expires_at: str


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class InventoryReservationFailed(Event):
    event_type: ClassVar[str] = "InventoryReservationFailed"
    order_id: str
    reason: str
    shortages: list[ShortageData]


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class InventoryConfirmed(Event):
    event_type: ClassVar[str] = "InventoryConfirmed"
    order_id: str
    items: list[StockLine]


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class InventoryReleased(Event):
    """Stock given back (``restocked``: it had been sold); reason ``EXPIRED`` is an expiry."""

    event_type: ClassVar[str] = "InventoryReleased"
    order_id: str
    items: list[StockLine]
    reason: str
    restocked: bool


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class StockAdjusted(Event):
    """A product's stock set by an operator (stream per product; price a two-decimal string)."""

    event_type: ClassVar[str] = "StockAdjusted"
    product_id: str
    name: str
    price: str
    delta: int
    available: int


ReservationEvent = InventoryReserved | InventoryReservationFailed | InventoryConfirmed | InventoryReleased
