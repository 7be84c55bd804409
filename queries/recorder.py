"""The query side's SQL, in one place: read-model rows written set-based, stream cursors
claimed, the events a replay has left to apply, the API's searches and analytics.

:mod:`queries.projections` decides what the read models become (which rows, which columns);
a recorder writes it. On PostgreSQL every kind of write of a whole batch is one statement —
the new orders with all their lines, the changed orders, the payment outcomes — and the
stream cursors of a batch are claimed together. The portable recorder (SQLite, the embedded
mode) writes row by row and claims nothing in advance: each event then takes the one by one
path of ``eventstore.ordering.apply_in_order``. The same recorder finds the events a replay
(:mod:`queries.replay`) has still to apply: on PostgreSQL by ``(tx, id)`` position among the
events safe to read, on SQLite by ``id`` alone (one writer commits in id order).

The API's reads (:mod:`queries.selectors`, :mod:`queries.analytics`) have a recorder of their
own. On PostgreSQL a search uses the full-text column and analytics read the materialized
views, where the ORM reads go (the replica inside ``config.replica.read``); the portable one
matches every word with ``icontains`` and has no views, so analytics computes its figures
from the read models.

Each is chosen once, at its first use (:func:`recorder`, :func:`read_recorder`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import connection, connections, transaction
from django.db.models import BooleanField, F, FloatField, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from config import replica
from eventstore.models import StoredEvent, StreamCursor
from eventstore.reader import Position
from eventstore.sql import bound_cursor, column, column_name, prepared, unnest

from .models import AnalyticsRefresh, OrderItemReadModel, OrderReadModel, PaymentReadModel

_ORDERS = OrderReadModel._meta.db_table
_LINES = OrderItemReadModel._meta.db_table
_PAYMENTS = PaymentReadModel._meta.db_table
_CURSORS = StreamCursor._meta.db_table
_EVENTS = StoredEvent._meta.db_table


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


@dataclass(frozen=True, slots=True)
class GapScan:
    """One look past a replay's position: the events looked at, and those not applied yet."""

    scanned: int  # events of the projection's types looked at
    head: Position  # the last of them
    gaps: list[tuple[int, int, bool]]  # (id, tx, ripe) of those beyond their stream's cursor, in order


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
    """The portable recorder: one statement per row (SQLite has one writer and no arrays), and
    positions by ``id`` alone.
    """

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

    def scan_gaps(
        self,
        consumer: str,
        types: list[str],
        position: Position,
        *,
        limit: int,
        scan: int,
        ripe_before: Callable[[], datetime],
    ) -> GapScan | None:
        """Up to ``scan`` events of ``types`` after ``position`` and the first ``limit`` of them
        beyond their stream's cursor of ``consumer`` (ripe: written by ``ripe_before()``);
        ``None`` when there is none.

        SQLite: one writer commits in id order, so ``id`` alone is the position.
        """
        looked = list(
            StoredEvent.objects.filter(id__gt=position.id, event_type__in=types)
            .order_by("id")
            .values_list("id", "aggregate_id", "version", "timestamp")[:scan]
        )
        if not looked:
            return None
        streams = sorted({aggregate_id for _, aggregate_id, _, _ in looked})
        applied: dict[str, int] = {}
        for start in range(0, len(streams), 500):  # some SQLite builds allow 999 parameters
            cursors = StreamCursor.objects.filter(
                consumer=consumer, aggregate_id__in=streams[start : start + 500]
            )
            applied.update(cursors.values_list("aggregate_id", "version"))
        ripe = ripe_before()
        gaps = [
            (event_id, 0, timestamp <= ripe)
            for event_id, stream, version, timestamp in looked
            if version > applied.get(stream, 0)
        ][:limit]
        return GapScan(len(looked), Position(0, looked[-1][0]), gaps)

    def streams_behind(self, consumer: str, *, than: str) -> list[tuple[str, int]]:
        """The streams whose cursor of ``consumer`` stands behind that of ``than`` (or has none),
        each with the version ``than`` stands at.
        """
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT old.aggregate_id, old.version FROM {_CURSORS} old LEFT JOIN {_CURSORS} fresh "
                "ON fresh.consumer = %s AND fresh.aggregate_id = old.aggregate_id "
                "WHERE old.consumer = %s AND old.version > COALESCE(fresh.version, 0)",
                [consumer, than],
            )
            return cursor.fetchall()

    def unapplied(
        self, consumer: str, event_types: Collection[str], position: Position
    ) -> QuerySet[StoredEvent]:
        """The events of ``event_types`` after ``position`` (by ``id``) beyond their stream's cursor."""
        return _beyond_cursors(consumer, event_types, f"{_EVENTS}.id > %s", [position.id])


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

    def scan_gaps(
        self,
        consumer: str,
        types: list[str],
        position: Position,
        *,
        limit: int,
        scan: int,
        ripe_before: Callable[[], datetime],
    ) -> GapScan | None:
        """One statement, over the events safe to read now only (``eventstore.reader``: older
        than every running transaction, in ``(tx, id)`` order), so a late-committing event stays
        ahead of the position until it commits.
        """
        with connection.cursor() as cursor:
            cursor.execute(
                "WITH safe AS MATERIALIZED ("
                f"  SELECT id, tx, aggregate_id, version, timestamp FROM {_EVENTS} "
                "   WHERE (tx, id) > (%s::text::xid8, %s) "
                "   AND tx < pg_snapshot_xmin(pg_current_snapshot()) AND event_type = ANY(%s) "
                "   ORDER BY tx, id LIMIT %s"
                "), gaps AS ("
                "  SELECT s.id, s.tx, s.timestamp FROM safe s "
                f"  LEFT JOIN {_CURSORS} c ON c.consumer = %s AND c.aggregate_id = s.aggregate_id "
                "   WHERE s.version > COALESCE(c.version, 0) ORDER BY s.tx, s.id LIMIT %s"
                ") "
                "SELECT (SELECT count(*) FROM safe), head.tx::text::bigint, head.id, "
                "ARRAY(SELECT id FROM gaps ORDER BY tx, id), "
                "ARRAY(SELECT tx::text::bigint FROM gaps ORDER BY tx, id), "
                "ARRAY(SELECT timestamp <= %s FROM gaps ORDER BY tx, id) "
                "FROM (SELECT tx, id FROM safe ORDER BY tx DESC, id DESC LIMIT 1) head",
                [str(position.tx), position.id, types, scan, consumer, limit, ripe_before()],
            )
            row = cursor.fetchone()
        if row is None:  # nothing safe to read after the position
            return None
        scanned, head_tx, head_id, gap_ids, gap_txs, ripe = row
        gaps = list(zip((int(i) for i in gap_ids), (int(t) for t in gap_txs), ripe, strict=True))
        return GapScan(int(scanned), Position(int(head_tx), int(head_id)), gaps)

    def unapplied(
        self, consumer: str, event_types: Collection[str], position: Position
    ) -> QuerySet[StoredEvent]:
        """After ``position`` in ``(tx, id)`` order."""
        after = f"({_EVENTS}.tx, {_EVENTS}.id) > (%s::text::xid8, %s)"
        return _beyond_cursors(consumer, event_types, after, [str(position.tx), position.id])


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


def _beyond_cursors(
    consumer: str, event_types: Collection[str], after: str, params: list[Any]
) -> QuerySet[StoredEvent]:
    applied = (
        f"{_EVENTS}.version <= COALESCE((SELECT c.version FROM {_CURSORS} c "
        f"WHERE c.consumer = %s AND c.aggregate_id = {_EVENTS}.aggregate_id), 0)"
    )
    rows = StoredEvent.objects.filter(event_type__in=event_types)
    # Our own table names only; every value is a parameter.
    return rows.extra(where=[after, f"NOT ({applied})"], params=[*params, consumer])  # noqa: S610


# (day, status, orders, amount, payments captured, payments failed)
DailyRow = tuple[date, str, int, Decimal, int, int]
# (product id, product name, quantity, revenue)
ProductRow = tuple[str, str, int, Decimal]

_VIEWS = ("analytics_daily_orders", "analytics_daily_products")
_REFRESH_NAME = "analytics"


class ReadRecorder:
    """The portable reads: a search matches words, and there are no analytics views."""

    def search(
        self, rows: QuerySet[OrderReadModel], q: str, exact: Q
    ) -> tuple[QuerySet[OrderReadModel], tuple[Any, ...]]:
        """The ``rows`` matching ``q`` or ``exact``, and their order (best first): here every
        word of ``q`` must appear in the row's search text (icontains), the newest first.
        """
        words = Q()
        for word in q.split():
            words &= Q(search_text__icontains=word)
        return rows.filter(words | exact), ("-created_at", "order_id")

    def refresh_views(self) -> datetime | None:
        """Refresh the analytics views and record when (the start); ``None``: there are none."""
        return None

    def analytics_as_of(self) -> datetime:
        """When the analytics figures were taken: now, as they are computed from the read models."""
        return timezone.now()

    def analytics_rows(self, start: date, end: date) -> tuple[list[DailyRow], list[ProductRow]] | None:
        """The daily and product rows of the days ``start``..``end`` from the views; ``None``
        here: the caller computes them from the read models.
        """
        return None


class PostgresReadRecorder(ReadRecorder):
    """PostgreSQL: the full-text column, and the analytics materialized views."""

    def search(
        self, rows: QuerySet[OrderReadModel], q: str, exact: Q
    ) -> tuple[QuerySet[OrderReadModel], tuple[Any, ...]]:
        """The GIN-indexed tsvector (``websearch_to_tsquery``, ranked by ``ts_rank``), or ``exact``."""
        # A constant SQL text; the search words are always a parameter.
        query = "websearch_to_tsquery('simple', %s)"
        rows = rows.annotate(
            matched=RawSQL(f"search_vector @@ {query}", [q], output_field=BooleanField()),  # noqa: S611
            rank=RawSQL(f"ts_rank(search_vector, {query})", [q], output_field=FloatField()),  # noqa: S611
        ).filter(Q(matched=True) | exact)
        return rows, (F("rank").desc(), "-created_at", "order_id")

    def refresh_views(self) -> datetime | None:
        """Concurrently, on the primary: readers of the views are not blocked."""
        started = timezone.now()
        with transaction.atomic(), connection.cursor() as cursor:
            for view in _VIEWS:
                cursor.execute(f"REFRESH MATERIALIZED VIEW CONCURRENTLY {view}")
            AnalyticsRefresh.objects.update_or_create(name=_REFRESH_NAME, defaults={"refreshed_at": started})
        return started

    def analytics_as_of(self) -> datetime:
        """The start of the views' last refresh (refreshed now if they never were)."""
        last = (
            AnalyticsRefresh.objects.filter(name=_REFRESH_NAME).values_list("refreshed_at", flat=True).first()
        )
        return last or self.refresh_views() or timezone.now()

    def analytics_rows(self, start: date, end: date) -> tuple[list[DailyRow], list[ProductRow]] | None:
        # Where the ORM reads go: the replica inside config.replica.read (the API), else the primary.
        with connections[replica.read_alias()].cursor() as cursor:
            cursor.execute(
                "SELECT day, status, orders, amount, payments_captured, payments_failed "
                "FROM analytics_daily_orders WHERE day BETWEEN %s AND %s",
                [start, end],
            )
            daily = [tuple(row) for row in cursor.fetchall()]
            cursor.execute(
                "SELECT product_id, max(product_name), sum(quantity), sum(revenue) "
                "FROM analytics_daily_products WHERE day BETWEEN %s AND %s GROUP BY product_id",
                [start, end],
            )
            products = [tuple(row) for row in cursor.fetchall()]
        return daily, products


_chosen: ProjectionRecorder | None = None
_chosen_reads: ReadRecorder | None = None


def recorder() -> ProjectionRecorder:
    """The recorder of this process's database, chosen at its first use (the vendor never changes)."""
    global _chosen
    if _chosen is None:
        _chosen = PostgresProjectionRecorder() if connection.vendor == "postgresql" else ProjectionRecorder()
    return _chosen


def read_recorder() -> ReadRecorder:
    """The recorder of the API's reads on this process's database, chosen at its first use."""
    global _chosen_reads
    if _chosen_reads is None:
        _chosen_reads = PostgresReadRecorder() if connection.vendor == "postgresql" else ReadRecorder()
    return _chosen_reads
