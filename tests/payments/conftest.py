"""Fixtures of the payments tests: an isolated breaker per test, fast retries, payment set-up helpers."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal

import pytest


@pytest.fixture(autouse=True)
def _isolated_breaker(settings) -> str:
    """Each test has its own breaker state in Redis (a unique key prefix) and quick backoff."""
    prefix = f"test:h5:{uuid.uuid4().hex}"
    settings.PAYMENT_BREAKER_PREFIX = prefix
    settings.PAYMENT_RETRY_BACKOFF = 0.01
    return prefix


@pytest.fixture
def new_order_id() -> Callable[[], str]:
    """A factory of fresh order ids."""
    return lambda: str(uuid.uuid4())


@pytest.fixture
def requested(new_order_id) -> Callable[..., str]:
    """Record a PaymentRequested (as the ProcessPayment handler does) and return its order id."""
    from django.db import transaction

    from payments.handlers import request_payment

    def make(
        token: str = "tok_ok",  # noqa: S107 - a test card token
        amount: str = "25.00",
        order_id: str | None = None,
        customer_id: str = "",
    ) -> str:
        order_id = order_id or new_order_id()
        with transaction.atomic():
            request_payment(
                order_id=order_id,
                amount=Decimal(amount),
                method="card",
                token=token,
                customer_id=customer_id,
                command_id=str(uuid.uuid4()),
                strict=False,
            )
        return order_id

    return make


def ledger_entry(order_id: str):
    """The simulator's ledger row for an order (the external system's view)."""
    from payments.models import GatewayCharge

    return GatewayCharge.objects.filter(idempotency_key=f"order-{order_id}").first()


def stream_types(order_id: str) -> list[str]:
    """The event types of an order's payment stream, in order."""
    from eventstore.store import load_stream

    return [event.type for event in load_stream(f"payment-{order_id}")]
