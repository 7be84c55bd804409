"""What other contexts may import from `orders`: the saga's hooks into the order, and its owner.

The saga calls these inside its own transaction, so an order turns terminal in the same
transaction in which its saga does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from . import domain, handlers
from .audit import OrderFact, order_facts

CONTEXT = "orders"

__all__ = [
    "CONTEXT",
    "OrderChange",
    "OrderFact",
    "change_order",
    "expect_changes",
    "order_customer",
    "order_facts",
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


def _decision(change: OrderChange) -> Callable[[domain.Order], list[domain.DomainEvent]]:
    if change.action == "status":
        return lambda order: order.set_status(change.status)
    if change.action == "complete":
        return lambda order: order.complete()
    if change.action == "fail":
        return lambda order: order.fail(reason=change.reason)
    if change.action == "cancel":
        return lambda order: order.cancel(by=change.by, reason=change.reason)
    raise ValueError(f"unknown order change {change.action}")
