"""Plain SQL on Django models, for the hot paths where the ORM's query building costs more
than the query.

The models' own fields still do the conversions: values go in through ``get_db_prep_save``
(so JSON, UUIDs, decimals and datetimes are stored exactly as the ORM would store them, on
PostgreSQL and on SQLite) and :func:`column` gives the field for the converters on the way out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Field, Model

_columns: dict[tuple[type[Model], str], Field[Any, Any]] = {}


def column(model: type[Model], name: str) -> Field[Any, Any]:
    """The concrete field ``name`` of ``model`` (a column, not a relation's reverse side)."""
    found = _columns.get((model, name))
    if found is None:
        field = model._meta.get_field(name)
        if not isinstance(field, Field):
            raise TypeError(f"{model.__name__}.{name} is not a column")
        found = _columns[(model, name)] = field
    return found


def column_name(model: type[Model], name: str) -> str:
    """The quoted column name of the field ``name``."""
    return connection.ops.quote_name(str(column(model, name).column))


def table_name(model: type[Model]) -> str:
    """The quoted table name of ``model``."""
    return connection.ops.quote_name(model._meta.db_table)


def prepared(model: type[Model], name: str, value: Any) -> Any:
    """``value`` as the database driver takes it for the field ``name``, as the ORM sends it."""
    return column(model, name).get_db_prep_save(value, connection)


@dataclass(frozen=True, slots=True)
class Expression:
    """A value the database computes (e.g. a subquery) in place of a parameter."""

    sql: str
    params: tuple[Any, ...] = ()


Statement = tuple[str, list[Any]]


def insert_statement(model: type[Model], names: Sequence[str], rows: Sequence[Sequence[Any]]) -> Statement:
    """One multi-row INSERT of ``rows`` (values in ``names`` order; a value may be an
    :class:`Expression`), as SQL and parameters."""
    fields = [column(model, name) for name in names]
    params: list[Any] = []
    tuples = []
    for row in rows:
        placeholders = []
        for field, value in zip(fields, row, strict=True):
            if isinstance(value, Expression):
                placeholders.append(value.sql)
                params.extend(value.params)
            else:
                placeholders.append("%s")
                params.append(field.get_db_prep_save(value, connection))
        tuples.append("(" + ", ".join(placeholders) + ")")
    quote = connection.ops.quote_name
    columns = ", ".join(quote(str(field.column)) for field in fields)
    return f"INSERT INTO {table_name(model)} ({columns}) VALUES {', '.join(tuples)}", params


def insert_rows(
    model: type[Model], names: Sequence[str], rows: Sequence[Sequence[Any]], *, returning_id: bool = False
) -> list[int]:
    """Run :func:`insert_statement`; the new ids, in the order of ``rows``, if asked."""
    if not rows:
        return []
    sql, params = insert_statement(model, names, rows)
    if returning_id:
        sql += f" RETURNING {column_name(model, 'id')}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [result[0] for result in cursor.fetchall()] if returning_id else []
