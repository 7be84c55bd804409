"""Helpers for saga handler tests: products in the catalogue and answers fed to the saga."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from eventstore.messages import Message

SOURCES = {
    "InventoryReserved": ("inventory", "reservation"),
    "InventoryReservationFailed": ("inventory", "reservation"),
    "InventoryConfirmed": ("inventory", "reservation"),
    "InventoryReleased": ("inventory", "reservation"),
    "PaymentProcessed": ("payments", "payment"),
    "PaymentFailed": ("payments", "payment"),
    "PaymentRefunded": ("payments", "payment"),
}


# The commands each answer may answer (the saga matches an answer to its command by causation).
ANSWERED_COMMANDS = {
    "InventoryReserved": ("ReserveInventory",),
    "InventoryReservationFailed": ("ReserveInventory",),
    "InventoryConfirmed": ("ConfirmInventory",),
    "InventoryReleased": ("ReleaseInventory",),
    "PaymentProcessed": ("ProcessPayment", "ReportPaymentOutcome"),
    "PaymentFailed": ("ProcessPayment", "ReportPaymentOutcome"),
    "PaymentRefunded": ("RefundPayment",),
}


def last_command_id(order_id: str, message_type: str) -> str:
    """The id of the last command the saga sent that ``message_type`` answers ("" if none)."""
    from eventstore.models import OutboxMessage

    routing_keys = [f"{SOURCES[message_type][0]}.{command}" for command in ANSWERED_COMMANDS[message_type]]
    found = (
        OutboxMessage.objects.filter(routing_key__in=routing_keys, body__correlation_id=order_id)
        .order_by("-id")
        .values_list("message_id", flat=True)
        .first()
    )
    return "" if found is None else str(found)


def answer(message_type: str, order_id: str, *, causation_id: str | None = None, **data: Any) -> Message:
    """An event of inventory or payments about ``order_id``, as it would arrive.

    It answers the last command of its kind the saga sent (``causation_id`` None), or the one
    named ("" for an answer to no command: an expiry, an operator's action).
    """
    source, aggregate_type = SOURCES[message_type]
    if causation_id is None:
        causation_id = last_command_id(order_id, message_type)
    return Message(
        message_id=str(uuid.uuid4()),
        kind="event",
        type=message_type,
        aggregate_type=aggregate_type,
        aggregate_id=f"{aggregate_type}-{order_id}",
        data={"order_id": order_id, **data},
        occurred_at="2026-01-01T00:00:00Z",
        correlation_id=order_id,
        causation_id=causation_id,
        source=source,
    )


@pytest.fixture
def products(db: None) -> None:
    """Two products in the catalogue."""
    from inventory.public import upsert_product

    upsert_product(product_id="SKU-A", name="Alpha", price=Decimal("12.50"), available=10)
    upsert_product(product_id="SKU-B", name="Beta", price=Decimal("3.00"), available=5)


@pytest.fixture
def placed_order(products: None) -> Callable[..., str]:
    """A factory placing an order for alice; returns the order id."""
    from orders.handlers import RequestedLine, place_order

    def place(token: str = "tok_ok", quantity: int = 2) -> str:  # noqa: S107 - a simulator card token
        order = place_order(
            customer_id="alice",
            lines=[RequestedLine("SKU-A", quantity), RequestedLine("SKU-B", 1)],
            payment={"method": "card", "token": token},
        )
        return order.order_id

    return place
