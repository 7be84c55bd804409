"""Orders whose sagas stand where the console tests need them, on the real PostgreSQL.

Sagas are moved by the same answers the consumers would hand them (``eventstore.handling``)
and by the sweep; only "stuck" is made by moving the deadline back, as if the sweep had not run.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from eventstore.handling import handle
from eventstore.models import DeadLetter
from tests.sagas.conftest import answer


@pytest.fixture
def products(db: None) -> None:
    from inventory.public import upsert_product

    upsert_product(product_id="SKU-A", name="Alpha", price=Decimal("12.50"), available=10)
    upsert_product(product_id="SKU-B", name="Beta", price=Decimal("3.00"), available=5)


@pytest.fixture
def placed_order(products: None) -> Callable[..., str]:
    """A factory placing an order for alice (saga STARTED, ReserveInventory sent); returns its id."""
    from orders.handlers import RequestedLine, place_order

    def place(token: str = "tok_ok") -> str:  # noqa: S107 - a simulator card token
        order = place_order(
            customer_id="alice",
            lines=[RequestedLine("SKU-A", 2), RequestedLine("SKU-B", 1)],
            payment={"method": "card", "token": token},
        )
        return order.order_id

    return place


def reserve(order_id: str) -> None:
    handle("sagas", answer("InventoryReserved", order_id, items=[], expires_at="2099-01-01T00:00:00Z"))


def capture(order_id: str) -> None:
    handle("sagas", answer("PaymentProcessed", order_id, payment_id="p", amount="28.00", attempts=1))


@pytest.fixture
def completed_order(placed_order) -> Callable[[], str]:
    def make() -> str:
        order_id = placed_order()
        reserve(order_id)
        capture(order_id)
        handle("sagas", answer("InventoryConfirmed", order_id, items=[]))
        return order_id

    return make


@pytest.fixture
def captured_order(placed_order) -> Callable[[], str]:
    """Reserved and paid, confirmation pending (the saga holds a capture it has not refunded)."""

    def make() -> str:
        order_id = placed_order()
        reserve(order_id)
        capture(order_id)
        return order_id

    return make


@pytest.fixture
def failed_order(placed_order) -> Callable[[], str]:
    """Out of stock: saga FAILED, order FAILED just now."""

    def make() -> str:
        order_id = placed_order()
        handle("sagas", answer("InventoryReservationFailed", order_id, reason="OUT_OF_STOCK", items=[]))
        return order_id

    return make


@pytest.fixture
def parked_order(placed_order, settings) -> Callable[[], str]:
    """Cancelled, its release never answered: the sweep retries it, then parks the saga."""

    def make() -> str:
        from sagas import public as sagas_public
        from sagas.handlers import sweep_timeouts

        settings.SAGA_STEP_TIMEOUT = 1
        settings.SAGA_STEP_RETRIES = 0
        order_id = placed_order()
        sagas_public.request_cancellation(order_id=order_id, by="alice", reason="x")
        sweep_timeouts(now=timezone.now() + timedelta(hours=1))
        return order_id

    return make


@pytest.fixture
def stuck_order(placed_order) -> Callable[[], str]:
    """Running, its deadline an hour ago: the sweep that should have acted did not."""

    def make() -> str:
        from sagas.models import SagaInstance

        order_id = placed_order()
        SagaInstance.objects.filter(order_id=order_id).update(deadline=timezone.now() - timedelta(hours=1))
        return order_id

    return make


def dead_letter_of(order_id: str) -> DeadLetter:
    """A ConfirmInventory of ``order_id`` that failed every retry in the inventory consumer."""
    message_id = uuid.uuid4()
    return DeadLetter.objects.create(
        consumer="inventory",
        message_id=message_id,
        message_type="ConfirmInventory",
        correlation_id=order_id,
        exchange="oms.commands",
        routing_key="inventory.ConfirmInventory",
        body={
            "message_id": str(message_id),
            "kind": "command",
            "type": "ConfirmInventory",
            "correlation_id": order_id,
            "data": {"order_id": order_id},
        },
        headers={},
        error="RuntimeError: the database went away",
        attempts=4,
    )
