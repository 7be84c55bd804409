"""What other contexts may import from `sagas`: starting a saga, asking it to stop, its summary.

The functions run inside the caller's transaction (orders calls them while it appends its own
events), so an order and its saga never disagree.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from . import audit, console, domain, handlers, history, recorder
from .audit import SagaFact
from .ports import OrderPort, connect_orders
from .recorder import OpenSagas

CONTEXT = "sagas"
# The console's operator actions and the kinds of sagas that need a look (docs/console.md).
ACTIONS = domain.INTERVENTIONS
KINDS = domain.LOOK_KINDS

__all__ = [
    "ACTIONS",
    "CONTEXT",
    "KINDS",
    "OpenSagas",
    "OrderPort",
    "SagaConflict",
    "SagaFact",
    "connect_orders",
    "counts_to_look_at",
    "intervene",
    "open_saga_count",
    "open_sagas",
    "request_cancellation",
    "request_failure",
    "saga_facts",
    "saga_record",
    "saga_stream",
    "saga_summary",
    "sagas_to_look_at",
    "start_order_saga",
]

# What GET /api/orders/{order_id} may show as the saga's ``state`` and ``step`` (the schema's enums).
SAGA_STATES = domain.STATES
SAGA_STEPS = (domain.RESERVE, domain.PAY, domain.CONFIRM, domain.RELEASE, domain.REFUND, domain.AWAIT_PAYMENT)


class SagaConflict(Exception):
    """The saga's state does not allow the request (HTTP 409): e.g. the order already failed."""


def start_order_saga(
    *,
    order_id: str,
    customer_id: str,
    items: list[dict[str, Any]],
    total_amount: Decimal,
    payment: dict[str, Any],
    cause_id: str,
) -> None:
    """Create the saga (state STARTED) and send ReserveInventory."""
    handlers.start_saga(
        order_id=order_id,
        customer_id=customer_id,
        items=items,
        total_amount=total_amount,
        payment=payment,
        cause_id=cause_id,
    )


def request_cancellation(*, order_id: str, by: str, reason: str) -> str:
    """Compensate and end the order CANCELLED; returns the order's status now.

    Repeated while compensating, it changes nothing; raises :class:`SagaConflict` when the
    order is already CANCELLED or FAILED and ``LookupError`` when there is no such saga.
    """
    return _decide(
        order_id, lambda saga, now: saga.cancel(by=by, reason=reason, now=now, timing=handlers.timing())
    )


def request_failure(*, order_id: str, by: str, reason: str) -> str:
    """Compensate and end the order FAILED (reason ADMIN); returns the order's status now."""
    return _decide(order_id, lambda saga, now: saga.fail(by=by, now=now, timing=handlers.timing()))


def saga_summary(order_id: str) -> dict[str, Any] | None:
    """``{"state","step","attempts","deadline","needs_attention"}`` or ``None``."""
    return handlers.summary_of(order_id)


def saga_history(order_id: str) -> dict[str, list[dict[str, Any]]]:
    """``{"steps", "transitions"}``: every step attempt and state change of the order's saga."""
    return history.saga_history(order_id)


def _decide(order_id: str, decision: Any) -> str:
    try:
        saga = handlers.decide(order_id, decision)
    except domain.SagaRuleViolation as exc:
        raise SagaConflict(str(exc)) from exc
    return saga.order_status


def open_sagas() -> OpenSagas:
    """The sagas not yet terminal, by state, with the oldest start and the parked count.

    A scrape-time reading: ``config.metrics_state`` exports it as ``oms_sagas{state}``,
    ``oms_saga_oldest_open_age_seconds`` and ``oms_sagas_needing_attention``.
    """
    return recorder.open_sagas()


def open_saga_count() -> int:
    """How many sagas are on their way (neither terminal nor parked): the intake's work in progress."""
    return recorder.open_saga_count()


def saga_facts(*, since: datetime | None = None) -> dict[str, SagaFact]:
    """``{order id: SagaFact}`` of every saga started at or after ``since`` (for the money audit)."""
    return audit.saga_facts(since=since)


# --- the ops console (docs/console.md) ----------------------------------------------------------


def saga_stream(order_id: str) -> str:
    """The event stream of the saga of ``order_id``."""
    return f"saga-{order_id}"


def sagas_to_look_at(
    *, kinds: tuple[str, ...] = KINDS, offset: int = 0, limit: int = 20
) -> tuple[int, list[dict[str, Any]]]:
    """``(count, page)`` of the sagas parked, stuck past their deadline or failed lately (``KINDS``)."""
    return console.sagas_to_look_at(kinds=kinds, offset=offset, limit=limit)


def counts_to_look_at() -> dict[str, int]:
    """``{"attention", "stuck", "failed"}``: how many sagas of each kind need a look."""
    return console.counts_to_look_at()


def saga_record(order_id: str) -> dict[str, Any] | None:
    """The saga of an order with its transitions and step attempts, or ``None``."""
    return console.saga_record(order_id)


def intervene(order_id: str, action: str, *, admin: str) -> console.Intervention:
    """An operator's ``action`` (one of ``ACTIONS``), recorded as an event naming ``admin``.

    Raises :class:`SagaConflict` when the saga's state refuses it (nothing changed) and
    ``LookupError`` when there is no such saga.
    """
    try:
        return console.intervene(order_id, action, admin=admin)
    except domain.SagaRuleViolation as exc:
        raise SagaConflict(str(exc)) from exc
