"""The sagas context's SQL, in one place: loading and locking sagas, and writing what they decided.

The handlers (``sagas/handlers.py``) load sagas, let the domain decide and hand the recorder
what changed; they never talk to the database themselves. A consumer's batch of a hundred
answers is therefore a handful of statements, not hundreds: the batch's sagas are loaded and
locked with one SELECT, and every saga row, settled attempt, transition and new attempt of the
batch is written by :meth:`SagaRecorder.write` at the end of the unit of work.

Two implementations, one chosen when Django starts (:func:`select`, from ``SagasConfig.ready``):

- :class:`PostgresRecorder` locks with ``order_id = ANY(%s) ORDER BY order_id FOR UPDATE`` (one
  fixed lock order, so two batches touching the same sagas never deadlock) and writes all of a
  unit's changes with ONE statement of data-modifying CTEs (``UPDATE … FROM (VALUES …)`` for the
  changed rows, multi-row INSERTs for the new ones);
- :class:`PortableRecorder` (SQLite, the embedded mode) runs the same writes as a few plain
  statements (``executemany``); SQLite has no row locks, its ``IMMEDIATE`` transactions lock
  the whole database instead.

Values go through the model fields both ways (``get_db_prep_save`` in, the backend's and the
fields' converters out), so rows are stored and read exactly as the ORM would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Count, Min, Q, QuerySet

from eventstore.sql import (
    Expression,
    Statement,
    array_insert_statement,
    bound_cursor,
    column_name,
    converters_of,
    execute_as_one,
    insert_statement,
    prepared_row,
    table_name,
    unnest,
    update_statement,
)

from . import domain
from .models import SagaInstance, SagaStepAttempt, SagaTransition

# The saga row's columns the domain changes (``domain.Saga``'s mutable fields).
SAGA_FIELDS = (
    "state",
    "step",
    "attempts",
    "deadline",
    "needs_attention",
    "failure_reason",
    "outcome",
    "cancelled_by",
    "cancel_reason",
    "reserved",
    "reservation_expires_at",
    "payment_requested",
    "captured",
    "confirmed",
    "pending",
    "order_status",
    "expires_at",
    "commands",
    "refunded",
    # Cleared once the saga can no longer send ProcessPayment (``Saga.may_still_pay``).
    "payment_token",
)
# What is read of a saga row: the domain's fields, then its version and start.
_LOADED_FIELDS = (
    "order_id",
    "customer_id",
    "items",
    "amount",
    "payment_method",
    *SAGA_FIELDS,
    "version",
    "created_at",
)
# What an UPDATE of a saga row writes (the key first).
_UPDATED_FIELDS = ("order_id", *SAGA_FIELDS, "version", "updated_at")
# What a new saga row holds (every column, none left to a default).
_INSERTED_FIELDS = (*_LOADED_FIELDS, "updated_at")
_TRANSITION_FIELDS = ("saga", "at", "from_state", "to_state", "step", "reason", "cause_id")
_ATTEMPT_FIELDS = (
    "saga",
    "step",
    "command",
    "attempt",
    "message_id",
    "sent_at",
    "outcome",
    "answered_at",
    "answer",
    "error",
)
# What settling an attempt writes (the key first: saga and step; only PENDING rows change).
_SETTLED_FIELDS = ("saga", "step", "outcome", "answered_at", "answer", "error")


@dataclass(slots=True)
class Loaded:
    """A saga as read, with its row's version (the saga stream's) and start."""

    saga: domain.Saga
    version: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SagaRow:
    """A saga row to write: INSERT it when ``customer_id`` is given (a new saga), else UPDATE it."""

    saga: domain.Saga
    version: int
    created_at: datetime
    updated_at: datetime
    customer_id: str | None = None


@dataclass(frozen=True, slots=True)
class Settlement:
    """The PENDING attempts of ``steps`` of one saga, already in the table, end with ``outcome``."""

    order_id: str
    steps: tuple[str, ...]
    outcome: str
    at: datetime
    answer: str = ""
    error: str = ""


@dataclass(frozen=True, slots=True)
class Transition:
    """One row of the saga's transition log."""

    order_id: str
    at: datetime
    from_state: str
    to_state: str
    step: str | None
    reason: str
    cause_id: str


@dataclass(frozen=True, slots=True)
class Attempt:
    """A command sent for a step, to record as an attempt.

    ``number``: its number within the step when known (a new saga has no earlier attempt);
    ``None`` counts the step's attempts already in the table, plus ``earlier`` (those of the
    same step recorded in this unit of work, written in the same statement).
    """

    order_id: str
    step: str
    command: str
    message_id: str
    sent_at: datetime
    number: int | None
    earlier: int = 0
    outcome: str = SagaStepAttempt.PENDING
    answered_at: datetime | None = None
    answer: str = ""
    error: str = ""


@dataclass(slots=True)
class Changes:
    """Everything a unit of work (or one decision outside one) writes in the sagas' tables."""

    sagas: list[SagaRow]
    settlements: list[Settlement]
    transitions: list[Transition]
    attempts: list[Attempt]


class SagaRecorder:
    """The sagas' reads and writes; see the module docstring for the two implementations."""

    def __init__(self) -> None:
        self._converters = converters_of(SagaInstance, _LOADED_FIELDS)

    # --- reads -----------------------------------------------------------------------------

    def load(self, order_ids: Sequence[str], *, lock: bool, skip_locked: bool = False) -> dict[str, Loaded]:
        """The sagas of ``order_ids`` that exist, locked (in ``order_id`` order) when ``lock``."""
        if not order_ids:
            return {}
        sql, params = self._select(sorted(set(order_ids)), lock=lock, skip_locked=skip_locked)
        with bound_cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        loaded = (self._saga_of(row) for row in rows)
        return {found.saga.order_id: found for found in loaded}

    def due(self, now: datetime, *, limit: int, resending: bool) -> list[str]:
        """The open, unparked sagas past their deadline, earliest first.

        ``resending`` False leaves out the running sagas before their expiry (those only due to
        send their step again).
        """
        due = self._open_past_deadline(now)
        if not resending:
            due = due.exclude(state__in=domain.RUNNING, expires_at__gt=now)
        return list(due.order_by("deadline").values_list("order_id", flat=True)[:limit])

    def any_resend_due(self, now: datetime) -> bool:
        """Whether a running saga before its expiry is past its deadline (due to send its step again)."""
        return self._open_past_deadline(now).filter(state__in=domain.RUNNING, expires_at__gt=now).exists()

    def _open_past_deadline(self, now: datetime) -> QuerySet[SagaInstance]:
        return SagaInstance.objects.filter(deadline__lte=now, needs_attention=False).exclude(
            state__in=domain.TERMINAL
        )

    def _select(self, order_ids: list[str], *, lock: bool, skip_locked: bool) -> Statement:
        raise NotImplementedError

    def _saga_of(self, row: Sequence[Any]) -> Loaded:
        values = list(row)
        for index, col, converters in self._converters:
            for converter in converters:
                values[index] = converter(values[index], col, connection)
        order_id, customer_id, items, amount, payment_method, *fields, version, created_at = values
        state = dict(zip(SAGA_FIELDS, fields, strict=True))
        saga = domain.Saga(
            order_id=order_id,
            customer_id=customer_id,
            items=list(items),
            amount=str(amount),
            payment_method=payment_method,
            **state,
        )
        saga.pending = list(saga.pending)
        saga.commands = {step: list(ids) for step, ids in (saga.commands or {}).items()}
        return Loaded(saga=saga, version=version, created_at=created_at)

    # --- writes ----------------------------------------------------------------------------

    def write(self, changes: Changes) -> None:
        """Write ``changes``: saga rows, then settlements, then new transitions and attempts.

        Settlements apply to the attempts already in the table only: those recorded in the same
        ``changes`` were settled in memory before they are written.
        """
        raise NotImplementedError

    def _rows(self, changes: Changes) -> tuple[list[list[Any]], list[list[Any]]]:
        """The UPDATEd and the INSERTed saga rows, values in field order."""
        updated, inserted = [], []
        for row in changes.sagas:
            values: dict[str, Any] = {name: getattr(row.saga, name) for name in SAGA_FIELDS}
            values.update(order_id=row.saga.order_id, version=row.version, updated_at=row.updated_at)
            if row.customer_id is None:
                updated.append([values[name] for name in _UPDATED_FIELDS])
                continue
            values.update(
                items=row.saga.items,
                amount=Decimal(row.saga.amount),
                payment_method=row.saga.payment_method,
                created_at=row.created_at,
                customer_id=row.customer_id,
            )
            inserted.append([values[name] for name in _INSERTED_FIELDS])
        return updated, inserted

    @staticmethod
    def _settled(changes: Changes) -> list[list[Any]]:
        return [
            [s.order_id, step, s.outcome, s.at, s.answer, s.error[:2000]]
            for s in changes.settlements
            for step in s.steps
        ]

    @staticmethod
    def _transitions(changes: Changes) -> list[list[Any]]:
        return [
            [t.order_id, t.at, t.from_state, t.to_state, t.step, t.reason[:500], t.cause_id]
            for t in changes.transitions
        ]

    @staticmethod
    def _attempt(attempt: Attempt, number: int | Expression | None) -> list[Any]:
        return [
            attempt.order_id,
            attempt.step,
            attempt.command,
            number,
            attempt.message_id,
            attempt.sent_at,
            attempt.outcome,
            attempt.answered_at,
            attempt.answer,
            attempt.error,
        ]


class PostgresRecorder(SagaRecorder):
    """PostgreSQL: one locking SELECT per batch, and one statement for all of a unit's writes."""

    def _select(self, order_ids: list[str], *, lock: bool, skip_locked: bool) -> Statement:
        key = column_name(SagaInstance, "order_id")
        sql = f"{_select_columns()} WHERE {key} = ANY(%s) ORDER BY {key}"
        if lock:
            sql += " FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE"
        return sql, [order_ids]

    def write(self, changes: Changes) -> None:
        updated, inserted = self._rows(changes)
        settled = self._settled(changes)
        transitions = self._transitions(changes)
        statements: list[Statement] = []
        if updated:
            statements.append(update_statement(SagaInstance, _UPDATED_FIELDS, ("order_id",), updated))
        if settled:
            pending = (f"{column_name(SagaStepAttempt, 'outcome')} = %s", [SagaStepAttempt.PENDING])
            statements.append(
                update_statement(SagaStepAttempt, _SETTLED_FIELDS, ("saga", "step"), settled, pending)
            )
        if inserted:
            statements.append(array_insert_statement(SagaInstance, _INSERTED_FIELDS, inserted))
        if transitions:
            statements.append(array_insert_statement(SagaTransition, _TRANSITION_FIELDS, transitions))
        if changes.attempts:
            statements.append(self._insert_attempts(changes.attempts))
        execute_as_one(statements)

    def _insert_attempts(self, attempts: Sequence[Attempt]) -> Statement:
        """The attempts, each numbered in the statement when its number is not known here."""
        rows = [self._attempt(a, a.number) for a in attempts]
        columns = unnest(SagaStepAttempt, _ATTEMPT_FIELDS, rows, earlier=[a.earlier for a in attempts])
        quote = connection.ops.quote_name
        counted = (
            f"COALESCE({columns.values['attempt']}, (SELECT COUNT(*) FROM {table_name(SagaStepAttempt)} AS a "
            f"WHERE a.{quote('saga_id')} = v.{quote('saga_id')} AND a.{quote('step')} = v.{quote('step')})"
            f" + v.{quote('earlier')} + 1)"
        )
        values = [counted if name == "attempt" else columns.values[name] for name in _ATTEMPT_FIELDS]
        names = ", ".join(column_name(SagaStepAttempt, name) for name in _ATTEMPT_FIELDS)
        table = table_name(SagaStepAttempt)
        return f"INSERT INTO {table} ({names}) SELECT {', '.join(values)} FROM {columns.sql}", columns.params


class PortableRecorder(SagaRecorder):
    """Any backend (SQLite in the embedded mode): plain statements, one ``executemany`` per shape."""

    def _select(self, order_ids: list[str], *, lock: bool, skip_locked: bool) -> Statement:
        key = column_name(SagaInstance, "order_id")
        marks = ", ".join(["%s"] * len(order_ids))
        return f"{_select_columns()} WHERE {key} IN ({marks}) ORDER BY {key}", list(order_ids)

    def write(self, changes: Changes) -> None:
        updated, inserted = self._rows(changes)
        quote = connection.ops.quote_name
        with bound_cursor() as cursor:
            if updated:
                sets = ", ".join(f"{column_name(SagaInstance, name)} = %s" for name in _UPDATED_FIELDS[1:])
                cursor.executemany(
                    f"UPDATE {table_name(SagaInstance)} SET {sets} "
                    f"WHERE {column_name(SagaInstance, 'order_id')} = %s",
                    [[*prepared_row(SagaInstance, _UPDATED_FIELDS[1:], row[1:]), row[0]] for row in updated],
                )
            settled = self._settled(changes)
            if settled:
                settling = _SETTLED_FIELDS[2:]
                sets = ", ".join(f"{column_name(SagaStepAttempt, name)} = %s" for name in settling)
                cursor.executemany(
                    f"UPDATE {table_name(SagaStepAttempt)} SET {sets} WHERE {quote('saga_id')} = %s "
                    f"AND {quote('step')} = %s AND {quote('outcome')} = %s",
                    [
                        [
                            *prepared_row(SagaStepAttempt, settling, row[2:]),
                            row[0],
                            row[1],
                            SagaStepAttempt.PENDING,
                        ]
                        for row in settled
                    ],
                )
            for model, names, rows in (
                (SagaInstance, _INSERTED_FIELDS, inserted),
                (SagaTransition, _TRANSITION_FIELDS, self._transitions(changes)),
            ):
                if rows:
                    cursor.execute(*insert_statement(model, names, rows))
            if changes.attempts:
                # One row at a time: each counts the attempts written before it (the earlier ones
                # of this unit included), whatever the backend lets a multi-row VALUES see.
                numbered = Expression(f"COALESCE(%s, {_count_sql(0)})")
                template, _ = insert_statement(
                    SagaStepAttempt, _ATTEMPT_FIELDS, [self._attempt(changes.attempts[0], numbered)]
                )
                before, after = _ATTEMPT_FIELDS[:3], _ATTEMPT_FIELDS[4:]
                rows = []
                for attempt in changes.attempts:
                    values = self._attempt(attempt, None)
                    rows.append(
                        [
                            *prepared_row(SagaStepAttempt, before, values[:3]),
                            attempt.number,
                            attempt.order_id,
                            attempt.step,
                            *prepared_row(SagaStepAttempt, after, values[4:]),
                        ]
                    )
                cursor.executemany(template, rows)


def _count_sql(earlier: int) -> str:
    quote = connection.ops.quote_name
    return (
        f"(SELECT COUNT(*) FROM {table_name(SagaStepAttempt)} "
        f"WHERE {quote('saga_id')} = %s AND {quote('step')} = %s) + {1 + int(earlier)}"
    )


def _select_columns() -> str:
    columns = ", ".join(column_name(SagaInstance, name) for name in _LOADED_FIELDS)
    return f"SELECT {columns} FROM {table_name(SagaInstance)}"


@dataclass(frozen=True, slots=True)
class OpenSagas:
    """The sagas not yet terminal: how many in each state, the oldest start, how many parked."""

    by_state: dict[str, int]
    oldest_started_at: datetime | None
    needing_attention: int


def open_sagas() -> OpenSagas:
    """Count the open sagas with one grouped statement (few rows: open sagas are few)."""
    rows = (
        SagaInstance.objects.exclude(state__in=sorted(domain.TERMINAL))
        .values("state")
        .annotate(
            n=Count("pk"), started=Min("created_at"), parked=Count("pk", filter=Q(needs_attention=True))
        )
        .order_by()
    )
    by_state = {state: 0 for state in domain.STATES if state not in domain.TERMINAL}
    oldest: datetime | None = None
    parked = 0
    for row in rows:
        by_state[row["state"]] = int(row["n"])
        oldest = row["started"] if oldest is None or row["started"] < oldest else oldest
        parked += int(row["parked"])
    return OpenSagas(by_state=by_state, oldest_started_at=oldest, needing_attention=parked)


def open_saga_count() -> int:
    """How many sagas are still on their way: neither terminal nor parked for an operator
    (one count over the open sagas' partial index; the intake's bound, orders/admission.py)."""
    open_sagas = SagaInstance.objects.exclude(state__in=sorted(domain.TERMINAL))
    return open_sagas.filter(needs_attention=False).count()


_recorder: SagaRecorder | None = None


def select() -> None:
    """Choose the implementation for the database backend (once, when Django starts)."""
    global _recorder  # chosen once at start-up, read on every call
    _recorder = PostgresRecorder() if connection.vendor == "postgresql" else PortableRecorder()


def recorder() -> SagaRecorder:
    """The recorder chosen at start-up."""
    if _recorder is None:
        raise RuntimeError("sagas.recorder.select() runs when Django starts (SagasConfig.ready)")
    return _recorder
