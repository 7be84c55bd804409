"""What other contexts may import from `orders`: the saga's hooks into the order, and its owner.

The saga calls these inside its own transaction, so an order turns terminal in the same
transaction in which its saga does.
"""

from __future__ import annotations

from . import handlers

CONTEXT = "orders"


def set_order_status(*, order_id: str, status: str, cause_id: str) -> None:
    """Show a running status (INVENTORY_RESERVED, PAYMENT_PROCESSING); never moves backwards."""
    handlers.record_decision(order_id, lambda order: order.set_status(status), cause_id=cause_id)


def complete_order(*, order_id: str, cause_id: str) -> None:
    """End the order COMPLETED (idempotent)."""
    handlers.record_decision(order_id, lambda order: order.complete(), cause_id=cause_id)


def fail_order(*, order_id: str, reason: str, cause_id: str) -> None:
    """End the order FAILED with ``reason`` (idempotent)."""
    handlers.record_decision(order_id, lambda order: order.fail(reason=reason), cause_id=cause_id)


def cancel_order(*, order_id: str, by: str, reason: str, cause_id: str) -> None:
    """End the order CANCELLED (idempotent)."""
    handlers.record_decision(order_id, lambda order: order.cancel(by=by, reason=reason), cause_id=cause_id)


def order_customer(order_id: str) -> str | None:
    """The customer id of an order, or ``None`` when there is no such order."""
    try:
        return handlers.load_order(order_id).customer_id
    except handlers.OrderNotFound:
        return None
