"""The projections' SQL, in one place: read-model rows written set-based, stream cursors claimed.

:mod:`queries.projections` decides what the read models become (which rows, which columns);
a recorder writes it. On PostgreSQL every kind of write of a whole batch is one statement —
the new orders with all their lines, the changed orders, the payment outcomes — and the
stream cursors of a batch are claimed together. The portable recorder (SQLite, the embedded
mode) writes row by row and claims nothing in advance: each event then takes the one by one
path of ``eventstore.ordering.apply_in_order``.

Chosen once, at its first use (:func:`recorder`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection

from eventstore.models import StreamCursor
from eventstore.sql import bound_cursor, column, column_name, prepared, unnest

from .models import OrderItemReadModel, OrderReadModel, PaymentReadModel

_ORDERS = OrderReadModel._meta.db_table
_LINES = OrderItemReadModel._meta.db_table
_PAYMENTS = PaymentReadModel._meta.db_table
_CURSORS = StreamCursor._meta.db_table


@dataclass(slots=True)
class NewOrder:
    """An order row to insert (an OrderCreated, with the later events of the same batch folded in)."""

    generation: int
    order_id: str
    customer_id: str
    status: str
    total_amount: Decimal
    failure_reason: str | None
    created_at: datetime
    updated_at: datetime
    version: int
    search_text: str
    lines: list[tuple[str, str, int, Decimal]] = field(default_factory=list)  # id, name, quantity, price


@dataclass(slots=True)
class OrderChange:
    """The columns to set on an existing order row (the last of a batch's events wins)."""

    generation: int
    order_id: str
    status: str
    updated_at: datetime
    version: int
    set_reason: bool = False
    failure_reason: str | None = None


@dataclass(slots=True)
class PaymentOutcome:
    """A payment read-model row to upsert (a capture is final)."""

    generation: int
    order_id: str
    outcome: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Claim:
    """Events ``first``..``last`` of one stream, claimed when its cursor stands at ``first - 1``."""

    aggregate_id: str
    first: int
    last: int


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


class ProjectionRecorder:
    """The portable recorder: one statement per row (SQLite has one writer and no arrays)."""

    def hold_lock(self, key: int, *, exclusive: bool) -> None:
        """Take a projection's advisory lock until the transaction ends (PostgreSQL only)."""

    def claim(self, consumer: str, claims: Sequence[Claim]) -> set[str]:
        """Move the cursors that stand just before their claim; the streams claimed (none here)."""
        return set()

    def insert_orders(self, orders: Sequence[NewOrder]) -> None:
        """Insert the order rows and their lines."""
        for order in orders:
            row = OrderReadModel(**{name: getattr(order, name) for name in _ORDER_COLUMNS})
            row.save(force_insert=True)
            OrderItemReadModel.objects.bulk_create(
                [
                    OrderItemReadModel(order=row, product_id=p, product_name=n, quantity=q, price=price)
                    for p, n, q, price in order.lines
                ]
            )

    def change_orders(self, changes: Sequence[OrderChange]) -> set[str]:
        """Update existing order rows; the customers of the rows changed (a stray stream: none)."""
        customers: set[str] = set()
        for change in changes:
            values: dict[str, Any] = {
                "status": change.status,
                "updated_at": change.updated_at,
                "version": change.version,
            }
            if change.set_reason:
                values["failure_reason"] = change.failure_reason
            sets = ", ".join(f"{column_name(OrderReadModel, name)} = %s" for name in values)
            params = [prepared(OrderReadModel, name, value) for name, value in values.items()]
            with bound_cursor() as cursor:
                cursor.execute(
                    f"UPDATE {_ORDERS} SET {sets} WHERE generation = %s AND order_id = %s "
                    "RETURNING customer_id",
                    [*params, change.generation, prepared(OrderReadModel, "order_id", change.order_id)],
                )
                customers.update(customer_id for (customer_id,) in cursor.fetchall())
        return customers

    def upsert_payments(self, outcomes: Sequence[PaymentOutcome]) -> None:
        """Insert or update payment outcomes; a row already CAPTURED stays so."""
        for outcome in outcomes:
            with bound_cursor() as cursor:
                cursor.execute(
                    _UPSERT_PAYMENTS.format(rows="VALUES (%s, %s, %s, %s)"),
                    [
                        *_payment_values(outcome),
                        PaymentReadModel.CAPTURED,
                    ],
                )

    def clear_orders(self, generation: int) -> None:
        """Delete one generation's order rows and their lines."""
        with bound_cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {_LINES} WHERE order_id IN (SELECT id FROM {_ORDERS} WHERE generation = %s)",
                [generation],
            )
            cursor.execute(f"DELETE FROM {_ORDERS} WHERE generation = %s", [generation])

    def clear_payments(self, generation: int) -> None:
        """Delete one generation's payment rows."""
        PaymentReadModel.objects.filter(generation=generation)._raw_delete(connection.alias)


class PostgresProjectionRecorder(ProjectionRecorder):
    """PostgreSQL: each kind of write of a batch in one statement, whatever its size."""

    def hold_lock(self, key: int, *, exclusive: bool) -> None:
        function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        with bound_cursor() as cursor:
            cursor.execute(f"SELECT {function}(%s)", [key])

    def claim(self, consumer: str, claims: Sequence[Claim]) -> set[str]:
        """One statement: a cursor at ``first - 1`` moves to ``last`` (created for a stream's
        first event, or moved from the 0 the locking path leaves), locked until the commit.

        What is not claimed (a gap, a duplicate, a concurrent delivery) takes the one by one
        path of ``apply_in_order`` afterwards, in the same transaction.
        """
        if not claims:
            return set()
        ordered = sorted(claims, key=lambda c: c.aggregate_id)
        params: list[Any] = [
            [c.aggregate_id for c in ordered],
            [c.first for c in ordered],
            [c.last for c in ordered],
        ]
        with bound_cursor() as cursor:
            cursor.execute(
                "WITH wanted (aggregate_id, first, last) AS "
                "(SELECT * FROM unnest(%s::text[], %s::integer[], %s::integer[])), "
                f"firsts AS (INSERT INTO {_CURSORS} (consumer, aggregate_id, version) "
                "SELECT %s, aggregate_id, last FROM wanted WHERE first = 1 ORDER BY aggregate_id "
                f"ON CONFLICT (consumer, aggregate_id) DO UPDATE SET version = EXCLUDED.version "
                f"WHERE {_CURSORS}.version = 0 RETURNING aggregate_id), "
                f"nexts AS (UPDATE {_CURSORS} AS c SET version = wanted.last FROM wanted "
                "WHERE c.consumer = %s AND c.aggregate_id = wanted.aggregate_id AND wanted.first > 1 "
                "AND c.version = wanted.first - 1 RETURNING c.aggregate_id) "
                "SELECT aggregate_id FROM firsts UNION ALL SELECT aggregate_id FROM nexts",
                [*params, consumer, consumer],
            )
            return {aggregate_id for (aggregate_id,) in cursor.fetchall()}

    def insert_orders(self, orders: Sequence[NewOrder]) -> None:
        """The order rows and all their lines in one statement (a data-modifying WITH)."""
        if not orders:
            return
        rows = unnest(
            OrderReadModel,
            _ORDER_COLUMNS,
            [
                [prepared(OrderReadModel, name, getattr(order, name)) for name in _ORDER_COLUMNS]
                for order in orders
            ],
        )
        params: list[Any] = list(rows.params)
        lines = [(order.generation, order.order_id, *line) for order in orders for line in order.lines]
        sql = (
            f"INSERT INTO {_ORDERS} ({', '.join(_ORDER_COLUMNS)}) "
            f"SELECT {', '.join(rows.values[name] for name in _ORDER_COLUMNS)} FROM {rows.sql}"
        )
        if lines:
            # Typed arrays, unnested in step: one parameter per column whatever the number of lines.
            arrays = ", ".join(
                f"%s::{column(OrderItemReadModel, name).db_type(connection)}[]" for name in _LINE_COLUMNS
            )
            sql = (
                f"WITH o AS ({sql} RETURNING id, generation, order_id) "
                f"INSERT INTO {_LINES} (order_id, {', '.join(_LINE_COLUMNS)}) "
                f"SELECT o.id, l.product_id, l.product_name, l.quantity, l.price FROM UNNEST(%s::integer[], "
                f"%s::uuid[], {arrays}) AS l (generation, order_key, {', '.join(_LINE_COLUMNS)}) "
                "JOIN o ON o.generation = l.generation AND o.order_id = l.order_key"
            )
            columns = list(zip(*lines, strict=True))
            params += [
                list(columns[0]),
                [prepared(OrderReadModel, "order_id", value) for value in columns[1]],
                *(
                    [prepared(OrderItemReadModel, name, value) for value in values]
                    for name, values in zip(_LINE_COLUMNS, columns[2:], strict=True)
                ),
            ]
        with bound_cursor() as cursor:
            cursor.execute(sql, params)

    def change_orders(self, changes: Sequence[OrderChange]) -> set[str]:
        """Every changed order row in one UPDATE … FROM (VALUES …)."""
        if not changes:
            return set()
        params = [
            [c.generation for c in changes],
            [prepared(OrderReadModel, "order_id", c.order_id) for c in changes],
            [c.status for c in changes],
            [prepared(OrderReadModel, "updated_at", c.updated_at) for c in changes],
            [c.version for c in changes],
            [c.set_reason for c in changes],
            [c.failure_reason for c in changes],
        ]
        with bound_cursor() as cursor:
            cursor.execute(
                f"UPDATE {_ORDERS} AS o SET status = v.status, updated_at = v.updated_at, "
                "version = v.version, "
                "failure_reason = CASE WHEN v.set_reason THEN v.failure_reason ELSE o.failure_reason END "
                "FROM unnest(%s::integer[], %s::uuid[], %s::text[], %s::timestamptz[], %s::integer[], "
                "%s::boolean[], %s::text[]) "
                "AS v (generation, order_id, status, updated_at, version, set_reason, failure_reason) "
                "WHERE o.generation = v.generation AND o.order_id = v.order_id "
                "RETURNING o.customer_id",
                params,
            )
            return {customer_id for (customer_id,) in cursor.fetchall()}

    def upsert_payments(self, outcomes: Sequence[PaymentOutcome]) -> None:
        """Every payment outcome in one INSERT … ON CONFLICT (one row per order and generation)."""
        if not outcomes:
            return
        columns = [list(values) for values in zip(*map(_payment_values, outcomes), strict=True)]
        with bound_cursor() as cursor:
            cursor.execute(
                _UPSERT_PAYMENTS.format(rows=_PAYMENT_ARRAYS), [*columns, PaymentReadModel.CAPTURED]
            )


_UPSERT_PAYMENTS = (
    f"INSERT INTO {_PAYMENTS} (generation, order_id, outcome, updated_at) {{rows}} "
    "ON CONFLICT (generation, order_id) DO UPDATE "
    "SET outcome = EXCLUDED.outcome, updated_at = EXCLUDED.updated_at "
    f"WHERE {_PAYMENTS}.outcome <> %s"
)


_PAYMENT_ARRAYS = "SELECT * FROM unnest(%s::integer[], %s::uuid[], %s::text[], %s::timestamptz[])"


def _payment_values(outcome: PaymentOutcome) -> tuple[Any, ...]:
    return (
        outcome.generation,
        prepared(PaymentReadModel, "order_id", outcome.order_id),
        outcome.outcome,
        prepared(PaymentReadModel, "updated_at", outcome.updated_at),
    )


_chosen: ProjectionRecorder | None = None


def recorder() -> ProjectionRecorder:
    """The recorder of this process's database, chosen at its first use (the vendor never changes)."""
    global _chosen
    if _chosen is None:
        _chosen = PostgresProjectionRecorder() if connection.vendor == "postgresql" else ProjectionRecorder()
    return _chosen
