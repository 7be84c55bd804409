"""Helpers of the query-side tests: events delivered to the queries context, real sagas run."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from eventstore.handling import handle
from eventstore.messages import Message, utc_iso
from queries.public import CONTEXT


def event(order_id: str, event_type: str, version: int, data: dict[str, Any], *, at: datetime) -> Message:
    """An order event as the bus would deliver it to the queries context."""
    return Message(
        message_id=str(uuid.uuid4()),
        kind="event",
        type=event_type,
        aggregate_type="order",
        aggregate_id=order_id,
        data={"order_id": order_id, **data},
        occurred_at=utc_iso(at),
        correlation_id=order_id,
        version=version,
        source="orders",
    )


def created(
    customer_id: str, items: list[tuple[str, str, int, str]], *, at: datetime, order_id: str | None = None
) -> Message:
    """OrderCreated with lines (product_id, product_name, quantity, price)."""
    order_id = order_id or str(uuid.uuid4())
    lines = [{"product_id": p, "product_name": n, "quantity": q, "price": price} for p, n, q, price in items]
    total = sum((Decimal(price) * q for _, _, q, price in items), Decimal("0"))
    data = {"customer_id": customer_id, "items": lines, "total_amount": f"{total:.2f}"}
    return event(order_id, "OrderCreated", 1, data, at=at)


def deliver(*messages: Message) -> None:
    """Hand each message to the queries context, as both transports do."""
    for message in messages:
        handle(CONTEXT, message)


def day(n: int, hour: int = 12) -> datetime:
    """A fixed moment in January 2026 (UTC)."""
    return datetime(2026, 1, n, hour, tzinfo=UTC)


@pytest.fixture
def products(db: None) -> None:
    """Catalogue products used by the saga-driven tests."""
    from inventory.public import upsert_product

    upsert_product(product_id="SKU-W", name="Blue Widget", price=Decimal("12.50"), available=100)
    upsert_product(product_id="SKU-G", name="Green Gadget", price=Decimal("3.00"), available=100)
    upsert_product(product_id="SKU-S", name="Scarce Sprocket", price=Decimal("7.25"), available=1)


@pytest.fixture
def place_and_run(products: None) -> Callable[..., str]:
    """Place an order through the command side and run its saga on the in-process bus.

    ``run=False`` only places it: its saga waits in the outbox for the next ``drain()``.
    """
    from eventstore.bus import drain
    from orders.handlers import RequestedLine, place_order

    def place(
        customer_id: str,
        lines: list[tuple[str, int]],
        token: str = "tok_ok",  # noqa: S107 - a simulator card token
        *,
        run: bool = True,
    ) -> str:
        order = place_order(
            customer_id=customer_id,
            lines=[RequestedLine(product_id, quantity) for product_id, quantity in lines],
            payment={"method": "card", "token": token},
        )
        if run:
            drain()
        return order.order_id

    return place
