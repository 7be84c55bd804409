"""What the saga needs from the order it drives, as an interface the composition root fills.

The saga changes its order in its own transaction (an order turns terminal in the transaction
in which its saga does), so it calls the orders context directly, not through a message. Yet
orders starts sagas, so a saga importing ``orders`` would close an import cycle. The saga
declares here what it calls; ``config.composition`` connects ``orders.public`` to it when
Django starts (every process: web, consumers, Celery, tests), and the saga never names orders.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from . import domain


class OrderPort(Protocol):
    """The order side of the saga: change an order, announce the orders a batch may change."""

    def change_order(self, *, order_id: str, changes: Sequence[domain.OrderEffect], cause_id: str) -> None:
        """Apply ``changes`` in turn with one read of the order and one append (caller's transaction)."""

    def expect_changes(self, order_ids: Sequence[str]) -> None:
        """The open unit of work may change these orders (read them together when first needed)."""


_orders: OrderPort | None = None


def connect_orders(port: OrderPort) -> None:
    """Give the saga its orders (the composition root calls this once, at start-up)."""
    global _orders
    _orders = port


def orders() -> OrderPort:
    """The connected order side; a clear error when start-up did not connect one."""
    if _orders is None:
        raise RuntimeError("no order port connected to the saga: is config.composition in INSTALLED_APPS?")
    return _orders
