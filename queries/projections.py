"""The projections: order and payment events applied to the read models, in order per stream.

A projection applies each event of one stream exactly once and in version order, using
``eventstore.ordering.apply_in_order`` with a cursor name that includes the generation being
written (``queries.orders.g3``); so a rebuild's cursors live and die with its tables, and the
live cursors never claim an event the new tables do not hold.

Every live application (bus delivery or catch-up) holds a shared advisory lock of its
projection for its transaction; ``rebuild_projections`` takes the exclusive one to swap
generations, which briefly pauses the live projector (PostgreSQL; SQLite has one writer).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection, transaction

from eventstore.messages import Message
from eventstore.ordering import apply_in_order

from . import cache
from .models import OrderItemReadModel, OrderReadModel, PaymentReadModel, ProjectionState
from .public import CONTEXT

ORDER_EVENTS = ("OrderCreated", "OrderStatusUpdated", "OrderCompleted", "OrderCancelled", "OrderFailed")
PAYMENT_EVENTS = ("PaymentProcessed", "PaymentFailed")

# Applies one event to one generation; returns the customers whose lists it changed.
Applier = Callable[[int, Message], set[str]]


@dataclass(frozen=True, slots=True)
class Projection:
    """A read model fed by some event types."""

    name: str
    event_types: tuple[str, ...]
    apply: Applier
    clear: Callable[[int], None]

    def consumer(self, generation: int) -> str:
        """The stream-cursor name of one generation of this projection."""
        return f"{CONTEXT}.{self.name}.g{generation}"

    @property
    def lock_key(self) -> int:
        """The advisory lock that serialises the live projector and a generation swap."""
        return zlib.crc32(f"{CONTEXT}.projection.{self.name}".encode())


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _apply_order(generation: int, event: Message) -> set[str]:
    data = event.data
    at = _moment(event.occurred_at)
    if event.type == "OrderCreated":
        return _create_order(generation, event, at)
    row = OrderReadModel.objects.filter(generation=generation, order_id=event.aggregate_id).first()
    if row is None:  # a stream without OrderCreated is not an order
        return set()
    changes: dict[str, object] = {"updated_at": at, "version": event.version}
    if event.type == "OrderStatusUpdated":
        changes["status"] = str(data["status"])
    elif event.type == "OrderCompleted":
        changes["status"] = "COMPLETED"
    elif event.type == "OrderCancelled":
        changes["status"] = "CANCELLED"
    elif event.type == "OrderFailed":
        changes.update(status="FAILED", failure_reason=str(data.get("reason") or "") or None)
    OrderReadModel.objects.filter(id=row.id).update(**changes)
    return {row.customer_id}


def _create_order(generation: int, event: Message, at: datetime) -> set[str]:
    data = event.data
    items = list(data.get("items") or [])
    customer_id = str(data["customer_id"])
    words = [str(item.get("product_name", "")) for item in items]
    row = OrderReadModel.objects.create(
        generation=generation,
        order_id=event.aggregate_id,
        customer_id=customer_id,
        status="PENDING",
        total_amount=Decimal(str(data["total_amount"])),
        created_at=at,
        updated_at=at,
        version=event.version or 1,
        search_text=" ".join([*words, event.aggregate_id, customer_id]),
    )
    OrderItemReadModel.objects.bulk_create(
        [
            OrderItemReadModel(
                order=row,
                product_id=str(item["product_id"]),
                product_name=str(item.get("product_name", "")),
                quantity=int(item["quantity"]),
                price=Decimal(str(item["price"])),
            )
            for item in items
        ]
    )
    return {customer_id}


def _apply_payment(generation: int, event: Message) -> set[str]:
    # A capture is final: a later failure report never turns it back (the payment stream's
    # other events, loaded to fill version gaps, change nothing here).
    if event.type not in PAYMENT_EVENTS:
        return set()
    outcome = PaymentReadModel.CAPTURED if event.type == "PaymentProcessed" else PaymentReadModel.FAILED
    at = _moment(event.occurred_at)
    row = PaymentReadModel.objects.filter(generation=generation, order_id=event.data["order_id"]).first()
    if row is None:
        PaymentReadModel.objects.create(
            generation=generation, order_id=event.data["order_id"], outcome=outcome, updated_at=at
        )
    elif row.outcome != PaymentReadModel.CAPTURED:
        PaymentReadModel.objects.filter(id=row.id).update(outcome=outcome, updated_at=at)
    return set()


def _clear_orders(generation: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {OrderItemReadModel._meta.db_table} WHERE order_id IN "
            f"(SELECT id FROM {OrderReadModel._meta.db_table} WHERE generation = %s)",
            [generation],
        )
        cursor.execute(f"DELETE FROM {OrderReadModel._meta.db_table} WHERE generation = %s", [generation])


def _clear_payments(generation: int) -> None:
    PaymentReadModel.objects.filter(generation=generation)._raw_delete(connection.alias)


PROJECTIONS: dict[str, Projection] = {
    "orders": Projection("orders", ORDER_EVENTS, _apply_order, _clear_orders),
    "payments": Projection("payments", PAYMENT_EVENTS, _apply_payment, _clear_payments),
}


def projections_for(event_type: str) -> list[Projection]:
    """The projections that read events of this type."""
    return [p for p in PROJECTIONS.values() if event_type in p.event_types]


def hold_live_lock(projection: Projection, *, exclusive: bool = False) -> None:
    """Take the projection's advisory lock until the transaction ends (PostgreSQL only)."""
    if connection.vendor != "postgresql":
        return
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {function}(%s)", [projection.lock_key])


def state_of(projection: Projection) -> ProjectionState:
    """The projection's state row (created at its first use)."""
    state, _ = ProjectionState.objects.get_or_create(name=projection.name)
    return state


def active_generation(name: str) -> int:
    """The generation the live API reads for projection ``name``."""
    return state_of(PROJECTIONS[name]).generation


def apply_event(projection: Projection, generation: int, message: Message) -> int:
    """Apply ``message`` (and any missing earlier version) to ``generation``; returns how many.

    Runs in the caller's transaction; the list and search caches of the touched customers
    are invalidated once it commits.
    """
    touched: set[str] = set()

    def apply(event: Message) -> None:
        touched.update(projection.apply(generation, event))

    applied = apply_in_order(projection.consumer(generation), message, apply)
    if touched:
        transaction.on_commit(lambda: cache.bump(customer_ids=touched))
    return applied


def project(message: Message) -> int:
    """Apply a delivered event to the live generation of every projection that reads it."""
    applied = 0
    for projection in projections_for(message.type):
        hold_live_lock(projection)
        applied += apply_event(projection, active_generation(projection.name), message)
    return applied
