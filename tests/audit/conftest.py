"""Helpers of the audit tests: a clean set of orders placed and settled the real way.

The orders go through the HTTP API, the outbox and the in-process bus (``tests.e2e`` helpers),
so every table the audit reads holds what the running system writes. The tests are
transactional (the gateway ledger commits on a connection of its own).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.core.management import call_command

from tests.e2e.conftest import place, settle


@dataclass(frozen=True)
class CleanSet:
    """The orders of :func:`clean_set`, by how they ended."""

    completed: str
    declined: str
    cancelled: str
    out_of_stock: str


@pytest.fixture(autouse=True)
def _empty_database(transactional_db: None, settings) -> None:
    """Start from empty tables (rows other tests' gateway calls committed on the ledger's own
    connection survive their rollback) and a breaker of this test's own."""
    call_command("flush", interactive=False, verbosity=0)
    settings.PAYMENT_BREAKER_PREFIX = f"test:audit:{uuid.uuid4().hex}"
    settings.PAYMENT_RETRY_BACKOFF = 0.01


@pytest.fixture
def clean_set(alice_client) -> CleanSet:
    """A completed order, a declined one, one cancelled after completion (refunded), one out of stock."""
    from inventory.public import upsert_product

    upsert_product(product_id="AUD-1", name="Audited one", price=Decimal("25.00"), available=10)
    upsert_product(product_id="AUD-2", name="Audited two", price=Decimal("4.50"), available=5)
    completed = place(alice_client, [("AUD-1", 2)])
    declined = place(alice_client, [("AUD-2", 1)], token="tok_declined")
    cancelled = place(alice_client, [("AUD-1", 1), ("AUD-2", 2)])
    out_of_stock = place(alice_client, [("AUD-2", 50)])
    settle()
    assert alice_client.delete(f"/api/orders/{cancelled}").status_code == 202
    settle()
    return CleanSet(completed=completed, declined=declined, cancelled=cancelled, out_of_stock=out_of_stock)
