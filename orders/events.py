"""The order's events (stream ``<order_id>``): the catalogue entries of the orders context.

Pure Python (no Django). Each class's ``event_type`` is the name stored and published, never
changed; its fields are exactly the stored ``event_data`` (``eventstore.catalogue``). Other
contexts read these names through ``orders.public``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, TypedDict

from eventstore.catalogue import Event, register


class OrderLine(TypedDict):
    """One line of an order as the event carries it (money as a two-decimal string)."""

    product_id: str
    product_name: str
    quantity: int
    price: str


class PaymentChoice(TypedDict):
    """How the customer pays (the card token never enters the event log)."""

    method: str


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class OrderCreated(Event):
    event_type: ClassVar[str] = "OrderCreated"
    order_id: str
    customer_id: str
    items: list[OrderLine]
    total_amount: str
    payment: PaymentChoice


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class OrderStatusUpdated(Event):
    event_type: ClassVar[str] = "OrderStatusUpdated"
    order_id: str
    status: str
    previous_status: str


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class OrderCompleted(Event):
    event_type: ClassVar[str] = "OrderCompleted"
    order_id: str


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class OrderFailed(Event):
    event_type: ClassVar[str] = "OrderFailed"
    order_id: str
    reason: str


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class OrderCancelled(Event):
    event_type: ClassVar[str] = "OrderCancelled"
    order_id: str
    reason: str
    by: str


OrderEvent = OrderCreated | OrderStatusUpdated | OrderCompleted | OrderFailed | OrderCancelled
ORDER_EVENTS: tuple[type[OrderEvent], ...] = (
    OrderCreated,
    OrderStatusUpdated,
    OrderCompleted,
    OrderFailed,
    OrderCancelled,
)
