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

import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection, transaction

from eventstore.messages import Message
from eventstore.ordering import apply_in_order
from eventstore.sql import column, column_name, prepared

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


_ORDERS = OrderReadModel._meta.db_table
_LINES = OrderItemReadModel._meta.db_table
_PAYMENTS = PaymentReadModel._meta.db_table


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _apply_order(generation: int, event: Message) -> set[str]:
    data = event.data
    at = _moment(event.occurred_at)
    if event.type == "OrderCreated":
        return _create_order(generation, event, at)
    changes: dict[str, object] = {"updated_at": at, "version": event.version}
    if event.type == "OrderStatusUpdated":
        changes["status"] = str(data["status"])
    elif event.type == "OrderCompleted":
        changes["status"] = "COMPLETED"
    elif event.type == "OrderCancelled":
        changes["status"] = "CANCELLED"
    elif event.type == "OrderFailed":
        changes.update(status="FAILED", failure_reason=str(data.get("reason") or "") or None)
    # One statement: a stream without OrderCreated is not an order (no row, nothing changes).
    columns = ", ".join(f"{column_name(OrderReadModel, name)} = %s" for name in changes)
    params = [prepared(OrderReadModel, name, value) for name, value in changes.items()]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_ORDERS} SET {columns} WHERE generation = %s AND order_id = %s RETURNING customer_id",
            [*params, generation, prepared(OrderReadModel, "order_id", event.aggregate_id)],
        )
        return {customer_id for (customer_id,) in cursor.fetchall()}


def _create_order(generation: int, event: Message, at: datetime) -> set[str]:
    data = event.data
    items = list(data.get("items") or [])
    customer_id = str(data["customer_id"])
    words = [str(item.get("product_name", "")) for item in items]
    row = OrderReadModel(
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
    lines = [
        OrderItemReadModel(
            product_id=str(item["product_id"]),
            product_name=str(item.get("product_name", "")),
            quantity=int(item["quantity"]),
            price=Decimal(str(item["price"])),
        )
        for item in items
    ]
    if connection.vendor == "postgresql" and lines:
        _insert_order_with_lines(row, lines)
    else:
        row.save(force_insert=True)
        for line in lines:
            line.order = row
        OrderItemReadModel.objects.bulk_create(lines)
    return {customer_id}


_ORDER_COLUMNS = (
    "generation",
    "order_id",
    "customer_id",
    "status",
    "total_amount",
    "failure_reason",
    "created_at",
    "updated_at",
    "version",
    "search_text",
)
_LINE_COLUMNS = ("product_id", "product_name", "quantity", "price")


def _insert_order_with_lines(row: OrderReadModel, lines: list[OrderItemReadModel]) -> None:
    """The order row and its lines in one statement (PostgreSQL: a data-modifying CTE)."""
    order_values = [prepared(OrderReadModel, name, getattr(row, name)) for name in _ORDER_COLUMNS]
    line_values = [
        [prepared(OrderItemReadModel, name, getattr(line, name)) for name in _LINE_COLUMNS] for line in lines
    ]
    placeholders = ", ".join(["%s"] * len(_ORDER_COLUMNS))
    # Typed arrays, unnested in step: one parameter per column whatever the number of lines.
    arrays = ", ".join(
        f"%s::{column(OrderItemReadModel, name).db_type(connection)}[]" for name in _LINE_COLUMNS
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH o AS (INSERT INTO {_ORDERS} ({', '.join(_ORDER_COLUMNS)}) "
            f"VALUES ({placeholders}) RETURNING id) "
            f"INSERT INTO {_LINES} (order_id, {', '.join(_LINE_COLUMNS)}) "
            f"SELECT o.id, l.* FROM o, UNNEST({arrays}) AS l",
            [*order_values, *(list(column) for column in zip(*line_values, strict=True))],
        )


def _apply_payment(generation: int, event: Message) -> set[str]:
    # A capture is final: a later failure report never turns it back (the payment stream's
    # other events, loaded to fill version gaps, change nothing here).
    if event.type not in PAYMENT_EVENTS:
        return set()
    outcome = PaymentReadModel.CAPTURED if event.type == "PaymentProcessed" else PaymentReadModel.FAILED
    at = _moment(event.occurred_at)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {_PAYMENTS} (generation, order_id, outcome, updated_at) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (generation, order_id) DO UPDATE "
            "SET outcome = EXCLUDED.outcome, updated_at = EXCLUDED.updated_at "
            f"WHERE {_PAYMENTS}.outcome <> %s",
            [
                generation,
                prepared(PaymentReadModel, "order_id", event.data["order_id"]),
                outcome,
                prepared(PaymentReadModel, "updated_at", at),
                PaymentReadModel.CAPTURED,
            ],
        )
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


class _AfterCommit:
    """A callback run once the current transaction commits, shared by the work of that transaction.

    It stands for the transaction while it is registered and has not run: Django drops it
    when the transaction, or the savepoint it was registered in, rolls back (and with it
    whatever that savepoint did, such as an advisory lock taken there).
    """

    __slots__ = ("ran",)

    def __init__(self) -> None:
        self.ran = False

    def __call__(self) -> None:
        self.ran = True
        self.run()

    def run(self) -> None:
        """What to do after the commit."""

    def pending(self) -> bool:
        """Whether this callback still waits for the commit of the current transaction."""
        if self.ran or not connection.in_atomic_block:
            return False
        return any(entry[1] is self for entry in connection.run_on_commit)


class _LiveGeneration(_AfterCommit):
    """The live generation read under the projection's shared lock, held until the commit."""

    __slots__ = ("generation",)

    def __init__(self, generation: int) -> None:
        super().__init__()
        self.generation = generation


class _Invalidation(_AfterCommit):
    """The cache counters to bump once the transaction commits: all its projected events at once."""

    __slots__ = ("customers",)

    def __init__(self, customers: set[str]) -> None:
        super().__init__()
        self.customers = set(customers)

    def run(self) -> None:
        cache.bump(customer_ids=self.customers)


class _TransactionState(threading.local):
    def __init__(self) -> None:
        self.generations: dict[str, _LiveGeneration] = {}
        self.invalidation: _Invalidation | None = None


_current = _TransactionState()


def _invalidate_after_commit(customers: set[str]) -> None:
    """Bump these customers' (and the global) cache counters once, after the transaction commits."""
    if not customers:
        return
    pending = _current.invalidation
    if pending is not None and pending.pending():
        pending.customers.update(customers)
        return
    _current.invalidation = _Invalidation(customers)
    transaction.on_commit(_current.invalidation)


def _live_generation(projection: Projection) -> int:
    """The live generation, under the projection's shared lock (taken once per transaction)."""
    held = _current.generations.get(projection.name)
    if held is not None and held.pending():
        return held.generation
    hold_live_lock(projection)
    held = _LiveGeneration(active_generation(projection.name))
    _current.generations[projection.name] = held
    transaction.on_commit(held)
    return held.generation


def forget_live_generation(name: str) -> None:
    """Drop the generation remembered for this transaction (the caller has just swapped it)."""
    _current.generations.pop(name, None)


def apply_event(projection: Projection, generation: int, message: Message) -> int:
    """Apply ``message`` (and any missing earlier version) to ``generation``; returns how many.

    Runs in the caller's transaction; the list and search caches of the touched customers
    are invalidated once it commits (once for all the events of the transaction).
    """
    touched: set[str] = set()

    def apply(event: Message) -> None:
        touched.update(projection.apply(generation, event))

    applied = apply_in_order(projection.consumer(generation), message, apply)
    _invalidate_after_commit(touched)
    return applied


def project(message: Message) -> int:
    """Apply a delivered event to the live generation of every projection that reads it.

    The shared lock and the generation read are taken once per transaction: while the lock
    is held no generation swap can commit, so the generation read under it stays the live one.
    """
    applied = 0
    for projection in projections_for(message.type):
        applied += apply_event(projection, _live_generation(projection), message)
    return applied
