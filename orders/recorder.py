"""The orders context's SQL for the saga's changes: the histories of many orders in one read.

A consumer's batch of saga answers changes up to a hundred orders; reading their streams one
SELECT each would cost a hundred round trips, so ``orders.handlers`` reads them together here
(one statement) and keeps the orders in the unit of work's identity map.

Two implementations, one chosen when Django starts (:func:`select`, from ``OrdersConfig.ready``):
PostgreSQL takes the ids as one array parameter (``= ANY(%s)``, one statement text whatever
the batch size); the portable one (SQLite, the embedded mode) spells them out (``IN (…)``).
Values go through the event store's model fields as the ORM's would (its converters).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.db import connection

from eventstore.messages import utc_iso
from eventstore.models import StoredEvent
from eventstore.sql import Statement, column, column_name, table_name

from . import domain

_READ = ("aggregate_id", "event_type", "event_data", "version", "timestamp")


class OrderRecorder:
    """The orders' reads for the saga's changes; see the module docstring for the two implementations."""

    def __init__(self) -> None:
        self._converters: list[tuple[int, Any, list[Callable[..., Any]]]] = []
        for index, name in enumerate(_READ):
            col = column(StoredEvent, name).get_col(StoredEvent._meta.db_table)
            converters = [*connection.ops.get_db_converters(col), *col.get_db_converters(connection)]
            if converters:
                self._converters.append((index, col, converters))

    def histories(self, order_ids: Sequence[str]) -> dict[str, list[domain.RecordedEvent]]:
        """The stored events of each of ``order_ids`` in version order (an unknown id: no entry)."""
        if not order_ids:
            return {}
        where, params = self._where(sorted(set(order_ids)))
        columns = ", ".join(column_name(StoredEvent, name) for name in _READ)
        order = f"{column_name(StoredEvent, 'aggregate_id')}, {column_name(StoredEvent, 'version')}"
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {columns} FROM {table_name(StoredEvent)} WHERE {where} ORDER BY {order}", params
            )
            rows = cursor.fetchall()
        found: dict[str, list[domain.RecordedEvent]] = {}
        for row in rows:
            values = list(row)
            for index, col, converters in self._converters:
                for converter in converters:
                    values[index] = converter(values[index], col, connection)
            aggregate_id, event_type, data, version, at = values
            found.setdefault(aggregate_id, []).append(
                domain.RecordedEvent(type=event_type, data=data, version=version, occurred_at=utc_iso(at))
            )
        return found

    def _where(self, order_ids: list[str]) -> Statement:
        raise NotImplementedError


class PostgresRecorder(OrderRecorder):
    """PostgreSQL: the ids as one array parameter."""

    def _where(self, order_ids: list[str]) -> Statement:
        return f"{column_name(StoredEvent, 'aggregate_id')} = ANY(%s)", [order_ids]


class PortableRecorder(OrderRecorder):
    """Any backend (SQLite in the embedded mode): the ids spelled out."""

    def _where(self, order_ids: list[str]) -> Statement:
        marks = ", ".join(["%s"] * len(order_ids))
        return f"{column_name(StoredEvent, 'aggregate_id')} IN ({marks})", list(order_ids)


_recorder: OrderRecorder | None = None


def select() -> None:
    """Choose the implementation for the database backend (once, when Django starts)."""
    global _recorder  # chosen once at start-up, read on every call
    _recorder = PostgresRecorder() if connection.vendor == "postgresql" else PortableRecorder()


def recorder() -> OrderRecorder:
    """The recorder chosen at start-up."""
    if _recorder is None:
        raise RuntimeError("orders.recorder.select() runs when Django starts (OrdersConfig.ready)")
    return _recorder
