"""What other contexts may import from `payments`: names and read-only helpers, nothing else."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .events import (
    PaymentAttempted,
    PaymentFailed,
    PaymentOutcomeUnknown,
    PaymentProcessed,
    PaymentRefunded,
    PaymentRequested,
    RefundRequested,
)

if TYPE_CHECKING:
    from .audit import LedgerFact, PaymentFact

CONTEXT = "payments"
# The events of a payment (the catalogue entries of ``payments.events``), for the contexts that
# react to them.
EVENTS = (
    PaymentRequested,
    PaymentAttempted,
    PaymentOutcomeUnknown,
    PaymentProcessed,
    PaymentFailed,
    RefundRequested,
    PaymentRefunded,
)

# ``order id -> customer id`` (None: no such order), wired in by the application at start-up.
OrderDirectory = Callable[[str], "str | None"]
_directory: list[OrderDirectory] = []


def use_order_directory(directory: OrderDirectory) -> None:
    """Tell payments how to learn whether an order exists and whose it is.

    Only the operator's charge (``POST /api/payments/process``) needs it, for an order the saga
    has not asked to charge yet; the saga's commands carry the customer themselves. Payments
    imports no other context: the one that owns orders hands its lookup in when Django starts.
    """
    _directory[:] = [directory]


def order_directory() -> OrderDirectory | None:
    """The lookup given to :func:`use_order_directory`, if any."""
    return _directory[0] if _directory else None


def payment_status(order_id: str) -> dict[str, Any] | None:
    """The body of ``GET /api/payments/{order_id}``, or None before the saga reached payment."""
    from .models import PaymentRecord

    row = PaymentRecord.objects.filter(pk=str(order_id)).exclude(status="").first()
    if row is None:
        return None
    return {
        "payment_id": row.payment_id,
        "order_id": row.order_id,
        "status": row.status,
        "amount": f"{row.amount:.2f}",
        "refunded_amount": f"{row.refunded_amount:.2f}",
        "attempts": row.attempts,
        "captures": row.captures,
    }


def payment_history(order_id: str) -> list[dict[str, Any]]:
    """The payment's charge attempts, outcome and refunds, oldest first (empty before payment)."""
    from .history import payment_history as read

    return read(order_id)


def payment_facts(*, since: datetime | None = None) -> dict[str, PaymentFact]:
    """``{order id: PaymentFact}``: the payment projection of every order (for the money audit)."""
    from .audit import payment_facts as read

    return read(since=since)


def ledger_facts(*, since: datetime | None = None) -> dict[str, LedgerFact]:
    """``{order id: LedgerFact}``: the gateway ledger's entry of every order (for the money audit)."""
    from .audit import ledger_facts as read

    return read(since=since)


def payment_stream(order_id: str) -> str:
    """The event stream of the order's payment (for the ops console)."""
    from .domain import stream_id

    return stream_id(order_id)


def payment_console(order_id: str) -> dict[str, Any] | None:
    """The order's payment, its charge attempts, the gateway ledger's entry and the
    reconciliation's verdict on them (``payments.console``), or None when there is none."""
    from .console import payment_console as read

    return read(order_id)


# --- Scrape-time readings (composed into /metrics and the console summary by config) ------------


def gateway_names() -> list[str]:
    """The payment gateways this deployment talks to (the ``gateway`` label of its metrics)."""
    from .gateway import default_gateway

    return [default_gateway().name]


def breaker_states() -> dict[str, str]:
    """``{gateway: "CLOSED" | "OPEN" | "HALF_OPEN"}``: each gateway's circuit breaker as all processes see it.

    What ``oms_payment_circuit_breaker_state`` exports; raises when Redis does not answer.
    """
    from .breaker import shared_state

    return {name: shared_state(name) for name in gateway_names()}
