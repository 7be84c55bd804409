"""The Order aggregate: rebuilt from its events, deciding which events a command produces.

Pure Python (no Django): handlers load the stream, call a command here and append what it
returns. The events are the typed catalogue entries of ``orders.events``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from .events import (
    OrderCancelled,
    OrderCompleted,
    OrderCreated,
    OrderEvent,
    OrderFailed,
    OrderLine,
    OrderStatusUpdated,
)

PENDING = "PENDING"
INVENTORY_RESERVED = "INVENTORY_RESERVED"
PAYMENT_PROCESSING = "PAYMENT_PROCESSING"
COMPLETED = "COMPLETED"
CANCELLED = "CANCELLED"
FAILED = "FAILED"

STATUSES = (PENDING, INVENTORY_RESERVED, PAYMENT_PROCESSING, COMPLETED, CANCELLED, FAILED)
TERMINAL = frozenset({COMPLETED, CANCELLED, FAILED})
# The order of the running statuses: a status update never moves an order backwards.
_RUNNING_RANK = {PENDING: 0, INVENTORY_RESERVED: 1, PAYMENT_PROCESSING: 2}

FAILURE_REASONS = frozenset({"OUT_OF_STOCK", "PAYMENT_DECLINED", "PAYMENT_UNAVAILABLE", "TIMEOUT", "ADMIN"})

CENT = Decimal("0.01")


class OrderRuleViolation(Exception):
    """A command that the order's current state does not allow."""


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event of the order's stream with its place in it and its time."""

    event: OrderEvent
    version: int
    occurred_at: str


@dataclass(frozen=True, slots=True)
class PricedLine:
    """One order line with the catalogue's name and unit price."""

    product_id: str
    product_name: str
    quantity: int
    price: Decimal


def money(amount: Decimal) -> str:
    """Money as it travels: a string with two decimals."""
    return str(amount.quantize(CENT))


def place_order(
    *, order_id: str, customer_id: str, lines: Sequence[PricedLine], payment_method: str
) -> list[OrderCreated]:
    """Decide the creation of an order; the total is computed here, never taken from a client."""
    if not lines:
        raise OrderRuleViolation("an order needs at least one line")
    if len({line.product_id for line in lines}) != len(lines):
        raise OrderRuleViolation("each product may appear on one line only")
    total = sum((line.price * line.quantity for line in lines), Decimal("0"))
    items = [
        OrderLine(
            product_id=line.product_id,
            product_name=line.product_name,
            quantity=line.quantity,
            price=money(line.price),
        )
        for line in lines
    ]
    created = OrderCreated(
        order_id=order_id,
        customer_id=customer_id,
        items=items,
        total_amount=money(total),
        payment={"method": payment_method},
    )
    return [created]


@dataclass(slots=True)
class Order:
    """The state of one order as its events tell it."""

    order_id: str
    customer_id: str = ""
    status: str = PENDING
    items: list[OrderLine] = field(default_factory=list)
    total_amount: str = "0.00"
    payment_method: str = ""
    failure_reason: str | None = None
    created_at: str = ""
    updated_at: str = ""
    version: int = 0

    @classmethod
    def from_history(cls, order_id: str, events: Iterable[RecordedEvent]) -> Order | None:
        """Rebuild an order; ``None`` when its stream holds no event."""
        order = cls(order_id=order_id)
        for event in events:
            order.apply(event)
        return order if order.version else None

    @property
    def is_terminal(self) -> bool:
        """Whether the order reached its final status."""
        return self.status in TERMINAL

    def apply(self, event: RecordedEvent) -> None:
        """Move the state forward by one stored event."""
        match event.event:
            case OrderCreated() as created:
                self.customer_id = created.customer_id
                self.items = list(created.items)
                self.total_amount = created.total_amount
                self.payment_method = created.payment.get("method", "")
                self.created_at = event.occurred_at
            case OrderStatusUpdated(status=status):
                self.status = status
            case OrderCompleted():
                self.status = COMPLETED
            case OrderCancelled():
                self.status = CANCELLED
            case OrderFailed(reason=reason):
                self.status = FAILED
                self.failure_reason = reason
        self.version = event.version
        self.updated_at = event.occurred_at

    def set_status(self, status: str) -> list[OrderEvent]:
        """Show a later running status; a repeated or older one changes nothing."""
        if status not in (INVENTORY_RESERVED, PAYMENT_PROCESSING):
            raise OrderRuleViolation(f"{status} is not a running status")
        if self.is_terminal or _RUNNING_RANK[status] <= _RUNNING_RANK[self.status]:
            return []
        return [OrderStatusUpdated(order_id=self.order_id, status=status, previous_status=self.status)]

    def complete(self) -> list[OrderEvent]:
        """Mark the order completed (idempotent)."""
        if self.status == COMPLETED:
            return []
        self._require_running("complete")
        return [OrderCompleted(order_id=self.order_id)]

    def fail(self, *, reason: str) -> list[OrderEvent]:
        """Mark the order failed with one of the known reasons (idempotent)."""
        if reason not in FAILURE_REASONS:
            raise OrderRuleViolation(f"unknown failure reason {reason}")
        if self.status == FAILED:
            return []
        self._require_running("fail")
        return [OrderFailed(order_id=self.order_id, reason=reason)]

    def cancel(self, *, by: str, reason: str) -> list[OrderEvent]:
        """Mark the order cancelled; a completed order can be cancelled once it was compensated."""
        if self.status == CANCELLED:
            return []
        if self.status == FAILED:
            raise OrderRuleViolation("a failed order cannot be cancelled")
        return [OrderCancelled(order_id=self.order_id, reason=reason, by=by)]

    def _require_running(self, action: str) -> None:
        if self.is_terminal:
            raise OrderRuleViolation(f"cannot {action} an order that is {self.status}")
