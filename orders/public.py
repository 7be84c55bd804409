"""What other contexts may import from `orders`: the saga's hooks into the order, and its owner.

The saga calls these inside its own transaction, so an order turns terminal in the same
transaction in which its saga does. The saga does not import this module (orders imports
``sagas.public``, the one direction allowed): ``config.composition`` connects this module to
the saga's ``OrderPort`` at start-up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from . import domain, handlers, sessions
from .audit import OrderFact, order_facts
from .events import (
    ORDER_EVENTS,
    OrderCancelled,
    OrderCompleted,
    OrderCreated,
    OrderEvent,
    OrderFailed,
    OrderStatusUpdated,
)

CONTEXT = "orders"

__all__ = [
    "CONTEXT",
    "ORDER_EVENTS",
    "OrderCancelled",
    "OrderChange",
    "OrderCompleted",
    "OrderCreated",
    "OrderFact",
    "OrderFailed",
    "OrderStatusUpdated",
    "change_order",
    "expect_changes",
    "order_customer",
    "order_facts",
    "order_overview",
    "use_user_state_reader",
    "user_state",
]


class OrderChange(Protocol):
    """A change the saga asks of the order: ``status``, ``complete``, ``fail`` or ``cancel``."""

    @property
    def action(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def reason(self) -> str: ...

    @property
    def by(self) -> str: ...


def change_order(*, order_id: str, changes: Sequence[OrderChange], cause_id: str) -> None:
    """Apply ``changes`` in turn with one read of the order and one append.

    The same result as calling the functions below once each, in the same transaction.
    """
    decisions = [_decision(change) for change in changes]
    if decisions:
        handlers.record_decisions(order_id, decisions, cause_id=cause_id)


def expect_changes(order_ids: Sequence[str]) -> None:
    """The open unit of work may change these orders: read them together when the first is needed.

    The saga's batch preparer calls it with the batch's orders; outside a unit it does nothing.
    """
    handlers.expect_changes(order_ids)


def order_customer(order_id: str) -> str | None:
    """The customer id of an order, or ``None`` when there is no such order."""
    try:
        return handlers.load_order(order_id).customer_id
    except handlers.OrderNotFound:
        return None


def order_overview(order_id: str) -> dict[str, Any] | None:
    """The order as its stream tells it (its stream id is the order id), or None (for the ops console)."""
    try:
        order = handlers.load_order(order_id)
    except handlers.OrderNotFound:
        return None
    return {
        "order_id": order.order_id,
        "customer_id": order.customer_id,
        "status": order.status,
        "total_amount": order.total_amount,
        "items": order.items,
        "failure_reason": order.failure_reason,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
        "version": order.version,
    }


def _decision(change: OrderChange) -> Callable[[domain.Order], list[OrderEvent]]:
    if change.action == "status":
        return lambda order: order.set_status(change.status)
    if change.action == "complete":
        return lambda order: order.complete()
    if change.action == "fail":
        return lambda order: order.fail(reason=change.reason)
    if change.action == "cancel":
        return lambda order: order.cancel(by=change.by, reason=change.reason)
    raise ValueError(f"unknown order change {change.action}")


def user_state(username: str) -> dict[str, Any]:
    """The user's state as token checks read it: active flag, role and customer id."""
    return sessions.load_state(username)


def use_user_state_reader(reader: Callable[[str], dict[str, Any]]) -> None:
    """Where token checks read a user's state on a cache miss (the composition root: a split
    service without the user table asks the orders service)."""
    sessions.use_state_reader(reader)
