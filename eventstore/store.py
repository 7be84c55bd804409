"""Appending to and loading from the event store, with the outbox in the same transaction.

Every context writes through :func:`append` (events of one aggregate) and :func:`send`
(a command for another context). Both must run inside the caller's ``transaction.atomic``:
the events and their outbox rows commit together or not at all.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from config.conflicts import ConcurrentUpdate

from . import catalogue, publish_after_commit, tracing, wakeup
from .catalogue import Event
from .messages import Message, utc_iso
from .models import OutboxMessage, StoredEvent
from .registry import consumers_of
from .sql import bound_cursor, dialect, insert_returning_ids, insert_rows
from .unit_of_work import UnitOfWork, current


class ConcurrencyError(ConcurrentUpdate):
    """The stream moved past the expected version: reload the aggregate and decide again.

    A :class:`~config.conflicts.ConcurrentUpdate`: an API that lets it escape answers 409.
    """

    def __init__(self, aggregate_id: str, expected_version: int) -> None:
        super().__init__(f"stream {aggregate_id} is not at version {expected_version}")
        self.aggregate_id = aggregate_id
        self.expected_version = expected_version


@dataclass(slots=True)
class _NewRow:
    """An event row about to be inserted: the columns of :class:`StoredEvent`, without a model
    instance (building one per event cost more than writing it); ``id`` is set once stored."""

    message_id: uuid.UUID
    aggregate_id: str
    aggregate_type: str
    event_type: str
    event_data: dict[str, Any]
    version: int
    timestamp: datetime
    correlation_id: str
    causation_id: str
    trace_id: str
    schema_version: int
    id: int | None = None


def append(
    *,
    context: str,
    aggregate_type: str,
    aggregate_id: str,
    expected_version: int,
    events: Sequence[Event],
    correlation_id: str = "",
    causation_id: str = "",
) -> list[Message]:
    """Store ``events`` as versions ``expected_version + 1 …`` and queue them in the outbox.

    Each is stored with its type's name and schema version (``eventstore.catalogue``).

    Raises :class:`ConcurrencyError` when another writer already stored one of those versions.
    """
    _require_transaction()
    if not events:
        return []
    now = timezone.now()
    trace_id, headers = tracing.current_context()
    rows = [
        _NewRow(
            message_id=uuid.uuid4(),
            aggregate_id=aggregate_id,
            aggregate_type=aggregate_type,
            event_type=event.event_type,
            event_data=catalogue.to_data(event),
            schema_version=event.schema_version,
            version=expected_version + offset,
            timestamp=now,
            correlation_id=correlation_id,
            causation_id=causation_id,
            trace_id=trace_id,
        )
        for offset, event in enumerate(events, start=1)
    ]
    buffer = _buffer()
    if buffer is not None:
        return buffer.append(rows, context=context, headers=headers)
    try:
        # No savepoint (two round trips): a clash leaves the caller's transaction marked for
        # rollback; every caller then rolls the whole transaction back (and retries it, or answers 409).
        with transaction.atomic(savepoint=False):
            ids = insert_returning_ids(
                StoredEvent, _EVENT_COLUMNS, [_event_values(row) for row in rows], key="message_id"
            )
    except IntegrityError as exc:
        raise ConcurrencyError(aggregate_id, expected_version) from exc
    for row in rows:
        row.id = ids[str(row.message_id)]
    messages = [_event_message(row, context=context, headers=headers) for row in rows]
    _enqueue(messages)
    return messages


def send(
    *,
    context: str,
    command: str,
    aggregate_type: str,
    aggregate_id: str,
    data: dict[str, Any],
    correlation_id: str = "",
    causation_id: str = "",
    message_id: str = "",
) -> Message:
    """Queue a command for ``context`` in the outbox of the current transaction.

    ``message_id``: the command's id when the sender chose it (a saga matches answers to it).
    """
    _require_transaction()
    _, headers = tracing.current_context()
    message = Message(
        message_id=message_id or str(uuid.uuid4()),
        kind="command",
        type=command,
        aggregate_type=aggregate_type,
        aggregate_id=aggregate_id,
        data=data,
        occurred_at=utc_iso(timezone.now()),
        correlation_id=correlation_id,
        causation_id=causation_id,
        source=context,
        headers=headers,
    )
    _enqueue([message])
    return message


def load_stream(aggregate_id: str, *, after_version: int = 0, up_to: int | None = None) -> list[Message]:
    """The events of one stream in version order, optionally a slice of it."""
    # A plain cursor: on this hot path (every handler loads a stream) the ORM's query
    # compiler and model instances cost more than the query.
    params: list[Any] = [aggregate_id, after_version]
    upper = ""
    if up_to is not None:
        upper = " AND version <= %s"
        params.append(up_to)
    with bound_cursor() as cursor:
        cursor.execute(
            f"{_SELECT_EVENTS} WHERE aggregate_id = %s AND version > %s{upper} ORDER BY version", params
        )
        rows = cursor.fetchall()
    return [_stored_message(row) for row in rows] + _buffered_events(aggregate_id, after_version, up_to)


def load_streams(aggregate_ids: Sequence[str]) -> dict[str, list[Message]]:
    """The events of many streams, each in version order, with one statement (a batch's read).

    Every id gets an entry (an empty list for a stream with no event yet).
    """
    ids = sorted(set(aggregate_ids))
    found: dict[str, list[Message]] = {aggregate_id: [] for aggregate_id in ids}
    if not ids:
        return found
    where, params = dialect().any_of("aggregate_id", ids)
    with bound_cursor() as cursor:
        cursor.execute(f"{_SELECT_EVENTS} WHERE {where} ORDER BY aggregate_id, version", params)
        for row in cursor.fetchall():
            message = _stored_message(row)
            found[message.aggregate_id].append(message)
    for aggregate_id, messages in found.items():
        messages.extend(_buffered_events(aggregate_id, messages[-1].version or 0 if messages else 0, None))
    return found


def stream_versions(aggregate_ids: Sequence[str]) -> dict[str, int]:
    """The current version of each stream (0 for one with no event yet), with one statement."""
    ids = sorted(set(aggregate_ids))
    versions = dict.fromkeys(ids, 0)
    if not ids:
        return versions
    where, params = dialect().any_of("aggregate_id", ids)
    with bound_cursor() as cursor:
        cursor.execute(
            f"SELECT aggregate_id, MAX(version) FROM {_EVENT_TABLE} WHERE {where} GROUP BY aggregate_id",
            params,
        )
        versions.update((aggregate_id, int(version)) for aggregate_id, version in cursor.fetchall())
    for aggregate_id in ids:
        for message in _buffered_events(aggregate_id, versions[aggregate_id], None):
            versions[aggregate_id] = message.version or 0
    return versions


def load_slices(slices: Sequence[tuple[str, int, int]]) -> dict[str, list[Message]]:
    """Events ``after < version <= up_to`` of each ``(aggregate_id, after, up_to)``, in version
    order, with one statement (stored events only: a reader catching up on what others wrote)."""
    found: dict[str, list[Message]] = {aggregate_id: [] for aggregate_id, _, _ in slices}
    if not slices:
        return found
    ids, afters, uptos = (list(column) for column in zip(*sorted(slices), strict=True))
    with bound_cursor() as cursor:
        if dialect().arrays:
            cursor.execute(
                f"{_SELECT_EVENTS} AS e JOIN unnest(%s::text[], %s::integer[], %s::integer[]) "
                "AS w (stream, lo, hi) ON e.aggregate_id = w.stream AND e.version > w.lo "
                "AND e.version <= w.hi ORDER BY e.aggregate_id, e.version",
                [ids, afters, uptos],
            )
            rows = cursor.fetchall()
        else:
            rows = []
            for aggregate_id, after, up_to in zip(ids, afters, uptos, strict=True):
                cursor.execute(
                    f"{_SELECT_EVENTS} WHERE aggregate_id = %s AND version > %s AND version <= %s "
                    "ORDER BY version",
                    [aggregate_id, after, up_to],
                )
                rows += cursor.fetchall()
    for row in rows:
        message = _stored_message(row)
        found[message.aggregate_id].append(message)
    return found


_EVENT_TABLE = StoredEvent._meta.db_table
_SELECT_EVENTS = (
    "SELECT id, message_id, aggregate_id, aggregate_type, event_type, event_data, version, timestamp, "
    f"correlation_id, causation_id, schema_version FROM {_EVENT_TABLE}"
)


def _stored_message(row: Sequence[Any]) -> Message:
    """A row of ``_SELECT_EVENTS`` as a message (upcast to its type's current schema version)."""
    position, mid, aggregate_id, atype, kind, data, version, at, correlation, causation, schema = row
    data = json.loads(data) if isinstance(data, str | bytes) else data
    schema, data = catalogue.upcast(kind, schema, data)
    return Message(
        message_id=str(mid if isinstance(mid, uuid.UUID) else uuid.UUID(mid)),
        kind="event",
        type=kind,
        aggregate_type=atype,
        aggregate_id=aggregate_id,
        data=data,
        occurred_at=utc_iso(_aware(at)),
        correlation_id=correlation,
        causation_id=causation,
        version=version,
        position=position,
        source=atype,
        schema_version=schema,
    )


def _aware(value: datetime | str) -> datetime:
    """A timestamp column's value as an aware datetime (SQLite hands back text)."""
    moment = value if isinstance(value, datetime) else parse_datetime(value)
    if moment is None:
        raise ValueError(f"not a timestamp: {value!r}")
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, UTC)


def stream_version(aggregate_id: str) -> int:
    """The current version of a stream, 0 when it has no event."""
    with bound_cursor() as cursor:
        cursor.execute(
            f"SELECT MAX(version) FROM {connection.ops.quote_name(StoredEvent._meta.db_table)} "
            "WHERE aggregate_id = %s",
            [aggregate_id],
        )
        last = cursor.fetchone()[0]
    buffered = _buffered_events(aggregate_id, 0, None)
    return max([int(last or 0), *(m.version or 0 for m in buffered)])


def stored_to_message(row: StoredEvent, *, context: str | None = None) -> Message:
    """An event row as a message (the producing context is the aggregate type's context)."""
    return _event_message(row, context=context or row.aggregate_type, headers={})


def _event_message(row: StoredEvent | _NewRow, *, context: str, headers: dict[str, str]) -> Message:
    """An event row as a message, upcast to its type's current schema version (a row just
    written is current: one dictionary read)."""
    schema, data = catalogue.upcast(row.event_type, row.schema_version, row.event_data)
    return Message(
        message_id=str(row.message_id),
        kind="event",
        type=row.event_type,
        aggregate_type=row.aggregate_type,
        aggregate_id=row.aggregate_id,
        data=data,
        occurred_at=utc_iso(row.timestamp),
        correlation_id=row.correlation_id,
        causation_id=row.causation_id,
        version=row.version,
        position=row.id,
        source=context,
        headers=headers,
        schema_version=schema,
    )


def _enqueue(messages: Iterable[Message]) -> None:
    # The store keeps every event; the bus carries the events some context listens to (a new
    # listener catches up from the store by position). Commands always go: one with no
    # handler is a fault the relay must report, not drop.
    messages = [m for m in messages if m.kind == "command" or consumers_of(m)]
    if not messages:
        return
    buffer = _buffer()
    if buffer is not None:
        buffer.outbox.extend(messages)
        return
    _write_outbox(messages)


def _write_outbox(messages: Sequence[Message]) -> None:
    if not messages:
        return
    now = timezone.now()
    publish_now = publish_after_commit.enabled()
    rows = [
        (uuid.UUID(m.message_id), m.exchange, m.routing_key, m.to_body(), m.headers, now, 0, "")
        for m in messages
    ]
    if not publish_now:
        insert_rows(OutboxMessage, _OUTBOX_COLUMNS, rows)
    else:
        ids = insert_returning_ids(OutboxMessage, _OUTBOX_COLUMNS, rows, key="message_id")
        # Once committed, this process publishes the rows itself (the relay only sweeps what
        # that leaves behind); robust: a failing hand-off must not fail a committed request.
        committed = [(ids[m.message_id], m) for m in messages]
        transaction.on_commit(lambda: publish_after_commit.hand_off(committed), robust=True)
    transaction.on_commit(wakeup.ring)


class _Buffer:
    """The event store's writes in one unit of work: its events and outbox rows, written last.

    Events go in one INSERT, then the outbox rows in another, carrying the events' positions.
    """

    def __init__(self) -> None:
        self.rows: list[_NewRow] = []
        self.streams: dict[str, list[Message]] = {}
        self.outbox: list[Message] = []

    def append(self, rows: list[_NewRow], *, context: str, headers: dict[str, str]) -> list[Message]:
        stream = self.streams.setdefault(rows[0].aggregate_id, [])
        if stream and stream[-1].version != rows[0].version - 1:
            # Two decisions in this unit raced on one stream: the later one decided on stale state.
            raise ConcurrencyError(rows[0].aggregate_id, rows[0].version - 1)
        messages = [_event_message(row, context=context, headers=headers) for row in rows]
        self.rows.extend(rows)
        stream.extend(messages)
        _enqueue(messages)
        return messages

    def write(self) -> None:
        positions: dict[str, int] = {}
        if self.rows:
            try:
                with transaction.atomic(savepoint=False):
                    positions = insert_returning_ids(
                        StoredEvent, _EVENT_COLUMNS, [_event_values(r) for r in self.rows], key="message_id"
                    )
            except IntegrityError as exc:
                first = self.rows[0]
                raise ConcurrencyError(first.aggregate_id, first.version - 1) from exc
        _write_outbox(
            [
                m.with_position(positions[m.message_id]) if m.message_id in positions else m
                for m in self.outbox
            ]
        )


def _buffer() -> _Buffer | None:
    """The event store's buffer in this thread's unit of work, if one is open."""
    unit = current()
    if unit is None:
        return None
    return unit.identity(_Buffer, lambda: _new_buffer(unit))


def _new_buffer(unit: UnitOfWork) -> _Buffer:
    buffer = _Buffer()
    unit.finally_write(_Buffer, buffer.write)
    return buffer


def _buffered_events(aggregate_id: str, after_version: int, up_to: int | None) -> list[Message]:
    """The events of one stream appended in this thread's unit of work, not yet written."""
    buffer = _buffer()
    if buffer is None:
        return []
    return [
        m
        for m in buffer.streams.get(aggregate_id, ())
        if (m.version or 0) > after_version and (up_to is None or (m.version or 0) <= up_to)
    ]


_EVENT_COLUMNS = (
    "message_id",
    "aggregate_id",
    "aggregate_type",
    "event_type",
    "event_data",
    "version",
    "timestamp",
    "correlation_id",
    "causation_id",
    "trace_id",
    "schema_version",
)
_OUTBOX_COLUMNS = (
    "message_id",
    "exchange",
    "routing_key",
    "body",
    "headers",
    "created_at",
    "attempts",
    "last_error",
)


def _event_values(row: _NewRow) -> tuple[Any, ...]:
    return tuple(getattr(row, name) for name in _EVENT_COLUMNS)


def _require_transaction() -> None:
    if not connection.in_atomic_block:
        raise RuntimeError("append/send must run inside the caller's transaction.atomic()")
