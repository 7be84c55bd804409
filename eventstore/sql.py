"""Plain SQL on Django models, for the hot paths where the ORM's query building costs more
than the query.

The models' own fields still do the conversions: values go in through ``get_db_prep_save``
(so JSON, UUIDs, decimals and datetimes are stored exactly as the ORM would store them, on
PostgreSQL and on SQLite) and :func:`column` gives the field for the converters on the way out.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
from django.db import connection
from django.db.backends.utils import CursorWrapper
from django.db.models import Field, JSONField, Model

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


@contextmanager
def bound_cursor() -> Iterator[CursorWrapper]:
    """A cursor for the statements of the hot paths (the recorders', the event store's).

    On PostgreSQL its parameters are bound by the server: the rows of a batch, one JSON document
    (:func:`unnest`), are then copied, not escaped character by character, which made the
    client-side quoting of Django's default cursor the largest cost of writing a batch (20x
    slower, measured); the lists of keys (``= ANY(%s)``) travel as binary arrays. Elsewhere it
    is Django's own cursor. Either way it is wrapped as Django wraps its cursors (errors as
    ``django.db`` errors, queries logged under DEBUG). With the server binding, a parameter must
    have a type PostgreSQL can infer (cast it, ``%s::text``, where it stands alone, as in
    ``%s IS NULL``).
    """
    if not dialect().arrays:
        with connection.cursor() as found:
            yield found
        return
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        raw = _binding_cursor(connection.connection)
    connection.validate_thread_sharing()
    logged = connection.queries_logged
    with connection.make_debug_cursor(raw) if logged else connection.make_cursor(raw) as wrapped:
        yield wrapped


def _binding_cursor(raw_connection: Any) -> Any:
    """A server-binding psycopg cursor on ``raw_connection`` that sends lists in binary."""
    # Imported here: the portable dialect (SQLite) runs without the PostgreSQL backend loaded.
    from django.db.backends.postgresql import base
    from psycopg.types.array import ListBinaryDumper

    binding: Any = base.ServerBindingCursor  # Django's psycopg cursor with server-side binding
    found = binding(raw_connection)
    found.adapters.register_dumper(list, ListBinaryDumper)
    return found


def insert_rows(model: type[Model], names: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Insert ``rows`` with one statement (the dialect's: one JSON parameter on PostgreSQL)."""
    if rows:
        sql, params = dialect().insert(model, names, rows)
        with bound_cursor() as found:
            found.execute(sql, params)


def insert_returning_ids(
    model: type[Model], names: Sequence[str], rows: Sequence[Sequence[Any]], *, key: str
) -> dict[str, int]:
    """Insert ``rows`` with one statement; the new row ids by the (text of the) ``key`` column.

    Keyed, not by position: nothing promises that ``RETURNING`` lists rows in input order.
    """
    if not rows:
        return {}
    sql, params = dialect().insert(model, names, rows)
    sql += f" RETURNING {column_name(model, 'id')}, {column_name(model, key)}"
    with bound_cursor() as found:
        found.execute(sql, params)
        return {_text(value): row_id for row_id, value in found.fetchall()}


def _text(value: Any) -> str:
    """A key column's value as text (a UUID in canonical form, whichever way the backend gives it)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return str(value)


# --- PostgreSQL: rows as one JSON parameter -------------------------------------------------


def prepared_row(model: type[Model], names: Sequence[str], values: Sequence[Any]) -> list[Any]:
    """Values of ``names`` as the driver takes them (see :func:`prepared`)."""
    return [
        column(model, name).get_db_prep_save(value, connection)
        for name, value in zip(names, values, strict=True)
    ]


@dataclass(frozen=True, slots=True)
class Unnested:
    """Rows as one JSON parameter: ``sql`` is ``json_to_recordset(…) AS v(…)``, ``values`` reads each."""

    sql: str
    params: list[Any]
    values: dict[str, str]


def unnest(
    model: type[Model], names: Sequence[str], rows: Sequence[Sequence[Any]], **extra: list[int]
) -> Unnested:
    """``rows`` of ``model`` (values in ``names`` order), ``extra`` integers too, as one JSON array.

    A statement then has one parameter whatever the number of rows and columns: its text stays
    the same from one batch to the next, and the driver sends one string. The rows are encoded
    at once, in C (orjson), and PostgreSQL turns each field back into its column's type; an
    array per column would be inspected and dumped value by value in Python, which was the
    largest cost of a small batch's statements (docs/performance.md, the eighth round).
    """
    shape = _unnest_shape(model, tuple(names), tuple(extra))
    keys = shape.keys
    more = list(extra.values())
    records = [
        dict(zip(keys, [*row, *(values[index] for values in more)], strict=True))
        for index, row in enumerate(rows)
    ]
    for key, encoder in shape.encoded:  # a JSON field with an encoder of its own: as the ORM writes it
        for record in records:
            if record[key] is not None:
                record[key] = orjson.Fragment(json.dumps(record[key], cls=encoder))
    document = orjson.dumps(records, default=_json_default, option=orjson.OPT_NON_STR_KEYS)
    return Unnested(shape.sql, [document.decode()], dict(shape.values))


def _json_default(value: Any) -> Any:
    """What orjson does not write itself: decimals, as their exact text."""
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot send {type(value).__name__} in a row")


@dataclass(frozen=True, slots=True)
class _UnnestShape:
    """What :func:`unnest` writes for some columns, whatever the rows: computed once per columns."""

    sql: str
    values: dict[str, str]
    keys: tuple[str, ...]  # each row's field names, in ``names`` then ``extra`` order
    encoded: tuple[tuple[str, type[json.JSONEncoder]], ...]  # JSON fields with their own encoder


@functools.cache
def _unnest_shape(model: type[Model], names: tuple[str, ...], extra: tuple[str, ...]) -> _UnnestShape:
    quote = connection.ops.quote_name
    columns: list[str] = []
    values: dict[str, str] = {}
    keys: list[str] = []
    encoded: list[tuple[str, type[json.JSONEncoder]]] = []
    for name in names:
        field = column(model, name)
        key = str(field.column)
        if isinstance(field, JSONField) and field.encoder is not None:
            encoded.append((key, field.encoder))
        # JSON as jsonb; else the bare type (varchar, not varchar(24)): a cast would cut an
        # overlong value, the column itself refuses it, as the ORM's INSERT or UPDATE would.
        kind = "jsonb" if isinstance(field, JSONField) else bare_type(str(field.cast_db_type(connection)))
        columns.append(f"{quote(key)} {kind}")
        values[name] = f"v.{quote(key)}"
        keys.append(key)
    for name in extra:
        columns.append(f"{quote(name)} integer")
        values[name] = f"v.{quote(name)}"
        keys.append(name)
    sql = f"json_to_recordset(%s::json) AS v ({', '.join(columns)})"
    return _UnnestShape(sql, values, tuple(keys), tuple(encoded))


def bare_type(db_type: str) -> str:
    """A column type without its modifiers: ``varchar(24)`` is ``varchar``."""
    return db_type.split("(", 1)[0]


def update_statement(
    model: type[Model],
    names: Sequence[str],
    keys: Sequence[str],
    rows: Sequence[Sequence[Any]],
    condition: tuple[str, list[Any]] | None = None,
) -> Statement:
    """One UPDATE of the rows matched by ``keys``, setting the other ``names`` (``rows`` as one JSON value).

    Each target row must match at most one of ``rows``; ``condition`` narrows the target rows.
    """
    columns = unnest(model, names, rows)
    sets = ", ".join(
        f"{column_name(model, name)} = {columns.values[name]}" for name in names if name not in keys
    )
    where = " AND ".join(f"t.{column_name(model, key)} = {columns.values[key]}" for key in keys)
    params = list(columns.params)
    if condition is not None:
        where += f" AND t.{condition[0]}"
        params += condition[1]
    return f"UPDATE {table_name(model)} AS t SET {sets} FROM {columns.sql} WHERE {where}", params


def array_insert_statement(
    model: type[Model], names: Sequence[str], rows: Sequence[Sequence[Any]]
) -> Statement:
    """One INSERT of ``rows`` (as one JSON parameter)."""
    columns = unnest(model, names, rows)
    return _array_insert_sql(model, tuple(names)), columns.params


@functools.cache
def _array_insert_sql(model: type[Model], names: tuple[str, ...]) -> str:
    shape = _unnest_shape(model, names, ())
    targets = ", ".join(column_name(model, name) for name in names)
    reads = ", ".join(shape.values[name] for name in names)
    return f"INSERT INTO {table_name(model)} ({targets}) SELECT {reads} FROM {shape.sql}"


def execute_as_one(statements: Sequence[Statement]) -> None:
    """Run ``statements`` as one: the first ones as data-modifying CTEs of the last.

    The parts see one snapshot: none may depend on another's effect (settling attempts does not
    see the attempts inserted by the same statement, which is what is wanted).
    """
    if not statements:
        return
    *first, (last_sql, _) = statements
    sql = last_sql
    if first:
        sql = "WITH " + ", ".join(f"w{i} AS ({part})" for i, (part, _) in enumerate(first)) + " " + last_sql
    with bound_cursor() as found:
        found.execute(sql, [param for _, params in statements for param in params])


def converters_of(
    model: type[Model], names: Sequence[str]
) -> list[tuple[int, Any, list[Callable[..., Any]]]]:
    """The backend's and the fields' converters of these columns (as the ORM applies them)."""
    found = []
    for index, name in enumerate(names):
        col = column(model, name).get_col(model._meta.db_table)
        converters = [*connection.ops.get_db_converters(col), *col.get_db_converters(connection)]
        if converters:
            found.append((index, col, converters))
    return found


# --- the dialect, chosen once ---------------------------------------------------------------


class Dialect:
    """The statements that differ by backend; this portable one spells every value out."""

    arrays = False  # whether array parameters (``= ANY(%s)``, ``unnest``) are available

    def any_of(self, name: str, values: Sequence[Any]) -> Statement:
        """The condition "column ``name`` is one of ``values``" (``values`` not empty)."""
        return f"{connection.ops.quote_name(name)} IN ({', '.join(['%s'] * len(values))})", list(values)

    def insert(self, model: type[Model], names: Sequence[str], rows: Sequence[Sequence[Any]]) -> Statement:
        """One INSERT of ``rows``."""
        return insert_statement(model, names, rows)


class PostgresDialect(Dialect):
    """PostgreSQL: rows as one JSON parameter and sets of keys as arrays, so a statement's text and
    its parameter count stay the same whatever the number of rows (not thousands of values)."""

    arrays = True

    def any_of(self, name: str, values: Sequence[Any]) -> Statement:
        return f"{connection.ops.quote_name(name)} = ANY(%s)", [list(values)]

    def insert(self, model: type[Model], names: Sequence[str], rows: Sequence[Sequence[Any]]) -> Statement:
        return array_insert_statement(model, names, rows)


_dialect: Dialect | None = None


def dialect() -> Dialect:
    """The dialect of this process's database, chosen at first use (the backend never changes)."""
    global _dialect  # chosen once, read on every call
    if _dialect is None:
        _dialect = PostgresDialect() if connection.vendor == "postgresql" else Dialect()
    return _dialect
