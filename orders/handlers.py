"""Order command handlers: load the order, decide with the aggregate, append in one transaction.

Placing an order appends ``OrderCreated`` and starts its saga in the same transaction, so the
saga exists from the moment the client gets its 202. Later changes to the order come from the
saga (through ``orders.public``), inside the saga's own transaction.

Each event of an order is logged at INFO once its transaction commits ("order created", "order
status updated", "order completed", "order failed", "order cancelled"), with the order id as
``correlation_id``: with the saga's transitions, one order's lines tell its journey.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

from django.db import transaction

from config import metrics
from config.logging import carried_user, log_context, log_on_commit
from eventstore import catalogue
from eventstore.messages import Message
from eventstore.store import append, load_stream, load_streams
from eventstore.unit_of_work import UnitOfWork, current, unit_of_work
from inventory import public as inventory_public
from sagas import public as sagas_public

from . import domain, neighbours
from .events import OrderCancelled, OrderCompleted, OrderCreated, OrderEvent, OrderFailed, OrderStatusUpdated

logger = logging.getLogger(__name__)

CONTEXT = "orders"

# The log line of each event of an order, the status it leaves, and the fields of its data shown.
_LOGGED: dict[type[OrderEvent], tuple[str, str | None, tuple[str, ...]]] = {
    OrderCreated: ("order created", domain.PENDING, ("customer_id", "total_amount")),
    OrderStatusUpdated: ("order status updated", None, ("status", "previous_status")),
    OrderCompleted: ("order completed", domain.COMPLETED, ()),
    OrderFailed: ("order failed", domain.FAILED, ("reason",)),
    OrderCancelled: ("order cancelled", domain.CANCELLED, ("reason", "by")),
}
# The counter each event moves once its transaction commits (a failure by its reason).
_COUNTED = {
    OrderCreated: metrics.ORDERS_CREATED,
    OrderCompleted: metrics.ORDERS_COMPLETED,
    OrderCancelled: metrics.ORDERS_CANCELLED,
}


class UnknownProducts(Exception):
    """Some ordered products are not in the catalogue; ``indexes`` are their line numbers."""

    def __init__(self, indexes: list[int]) -> None:
        super().__init__(f"unknown products on lines {indexes}")
        self.indexes = indexes


class OrderNotFound(LookupError):
    """No order has this id."""


@dataclass(frozen=True, slots=True)
class RequestedLine:
    """A line as the client asked for it (no name, no price)."""

    product_id: str
    quantity: int


def place_order(
    *,
    customer_id: str,
    lines: Sequence[RequestedLine],
    payment: dict[str, str],
    products: Mapping[str, inventory_public.ProductInfo] | None = None,
) -> domain.Order:
    """Price the lines, append OrderCreated and start the saga atomically.

    ``products``: the catalogue entries of the lines' products, when the caller read them
    already (a batch of placements reads them once for all its orders); else they are read
    here. Runs in the caller's unit of work if one is open (its writes go at its commit),
    else in one of its own. Raises :class:`UnknownProducts` before recording anything.
    """
    if products is None:
        products = neighbours.catalogue([line.product_id for line in lines])
    unknown = [index for index, line in enumerate(lines) if line.product_id not in products]
    if unknown:
        raise UnknownProducts(unknown)
    priced = [
        domain.PricedLine(
            product_id=line.product_id,
            product_name=products[line.product_id].name,
            quantity=line.quantity,
            price=Decimal(products[line.product_id].price),
        )
        for line in lines
    ]
    order_id = str(uuid.uuid4())
    events = domain.place_order(
        order_id=order_id, customer_id=customer_id, lines=priced, payment_method=payment["method"]
    )
    # The caller travels with the placement (a batch is written on another thread).
    with log_context(correlation_id=order_id, user_id=carried_user()), unit_of_work():
        stored = _append(order_id, 0, events, cause_id="")
        created = events[0]
        sagas_public.start_order_saga(
            order_id=order_id,
            customer_id=customer_id,
            items=cast(list[dict[str, Any]], created.items),
            total_amount=Decimal(created.total_amount),
            payment=dict(payment),
            cause_id=stored[0].message_id,
        )
    # The stream holds exactly the events just stored: rebuild from them, no read back.
    return _order_from(order_id, stored)


def load_order(order_id: str) -> domain.Order:
    """The order as its stream tells it (strongly consistent); raises :class:`OrderNotFound`.

    Inside a unit of work the order is read once and kept in the unit's identity map (kept
    current by :func:`record_decisions`): the orders announced by :func:`expect_changes` are
    read together with the first of them.
    """
    unit = current()
    if unit is None:
        return _order_from(order_id, load_stream(order_id))
    order = _orders_in(unit).get(order_id)
    if order is None:
        raise OrderNotFound(order_id)
    return order


def expect_changes(order_ids: Sequence[str]) -> None:
    """Announce orders that the open unit of work may change (nothing outside a unit).

    None is read yet: the first one loaded reads them all with one statement, so a batch that
    changes no order reads none, and one that changes many reads them once.
    """
    unit = current()
    if unit is not None:
        _orders_in(unit).expected.update(order_ids)


class _UnitOrders:
    """The orders read in one unit of work, and those announced but not read yet."""

    def __init__(self) -> None:
        self.expected: set[str] = set()
        self.loaded: dict[str, domain.Order | None] = {}

    def get(self, order_id: str) -> domain.Order | None:
        if order_id not in self.loaded:
            wanted = sorted((self.expected | {order_id}) - self.loaded.keys())
            streams = load_streams(wanted)  # with the events buffered in this unit
            for wanted_id in wanted:
                self.loaded[wanted_id] = domain.Order.from_history(wanted_id, _history(streams[wanted_id]))
            self.expected.clear()
        return self.loaded[order_id]


def _orders_in(unit: UnitOfWork) -> _UnitOrders:
    return unit.identity(_UnitOrders, _UnitOrders)


def cancel_order(*, order_id: str, by: str, reason: str) -> str:
    """Ask the saga to cancel (compensating what was done); returns the order status now.

    Raises ``sagas.public.SagaConflict`` when the order already ended CANCELLED or FAILED.
    """
    with transaction.atomic():
        return sagas_public.request_cancellation(order_id=order_id, by=by, reason=reason)


def fail_order(*, order_id: str, by: str, reason: str) -> str:
    """Ask the saga to compensate and end the order FAILED (reason ADMIN)."""
    with transaction.atomic():
        return sagas_public.request_failure(order_id=order_id, by=by, reason=reason)


def record_decisions(
    order_id: str, decisions: Sequence[Callable[[domain.Order], list[OrderEvent]]], *, cause_id: str
) -> None:
    """Apply each ``decide(order) -> events`` in turn, with one load and one append for them all.

    Runs in the caller's transaction (the saga's); the saga row lock serialises writers. Each
    decision sees the order as the events decided before it left it; so does a later call in
    the same unit of work (the order in its identity map is the one changed here).
    """
    order = load_order(order_id)
    expected_version = order.version
    decided: list[OrderEvent] = []
    for decide in decisions:
        for event in decide(order):
            decided.append(event)
            order.apply(domain.RecordedEvent(event, version=order.version + 1, occurred_at=order.updated_at))
    _append(order_id, expected_version, decided, cause_id=cause_id)


def _order_from(order_id: str, messages: Sequence[Message]) -> domain.Order:
    order = domain.Order.from_history(order_id, _history(messages))
    if order is None:
        raise OrderNotFound(order_id)
    return order


def _history(messages: Sequence[Message]) -> list[domain.RecordedEvent]:
    return [
        domain.RecordedEvent(
            catalogue.from_data(m.type, m.schema_version, m.data),  # type: ignore[arg-type]
            version=m.version or 0,
            occurred_at=m.occurred_at,
        )
        for m in messages
    ]


def _append(order_id: str, version: int, events: Sequence[OrderEvent], *, cause_id: str) -> list[Message]:
    metrics.count_after_commit(
        metrics.ORDERS_FAILED.labels(reason=event.reason or "UNKNOWN")
        if isinstance(event, OrderFailed)
        else _COUNTED[type(event)]
        for event in events
        if isinstance(event, OrderFailed) or type(event) in _COUNTED
    )
    for event in events:
        _log(order_id, event)
    return append(
        context=CONTEXT,
        aggregate_type="order",
        aggregate_id=order_id,
        expected_version=version,
        events=events,
        correlation_id=order_id,
        causation_id=cause_id,
    )


def _log(order_id: str, event: OrderEvent) -> None:
    line, status, shown = _LOGGED.get(type(event), ("order event", None, ()))
    fields = {name: getattr(event, name) for name in shown}
    if status is not None:
        fields["status"] = status
    log_on_commit(logger, logging.INFO, line, correlation_id=order_id, order_event=event.event_type, **fields)
