"""Saga handlers: lock the saga row, let the domain decide, carry out its effects in one transaction.

Every entry point runs inside the caller's transaction (the consumer's, with its inbox row, or
the orders handler's), so the saga row, its events, the commands it sends and the order's
terminal event commit together.

The hot path (one call per answer of inventory or payments) reads and writes the saga's tables
with plain SQL that PostgreSQL and SQLite both accept: the ORM's query compiler and model
materialisation cost more CPU than the statements themselves. Values still go through the
model fields (``get_db_prep_save`` on the way in, the backend's converters on the way out), so
they are stored and read exactly as the ORM would. On PostgreSQL the saga's own writes of one
step (answer, row, transitions, attempts) go as a single statement of data-modifying CTEs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from config import metrics
from eventstore import backlog
from eventstore.messages import Message
from eventstore.sql import Expression, Statement, column, insert_statement
from eventstore.store import NewEvent, append, send
from eventstore.unit_of_work import current
from orders import public as orders_public

from . import domain
from .models import SagaInstance, SagaStepAttempt, SagaTransition

logger = logging.getLogger(__name__)

CONTEXT = "sagas"

# The contexts whose queues carry a saga's commands and answers.
_SAGA_PIPELINE = ("inventory", "payments", CONTEXT)

# Which context and stream each command goes to.
_TARGETS = {
    "ReserveInventory": ("inventory", "reservation"),
    "ConfirmInventory": ("inventory", "reservation"),
    "ReleaseInventory": ("inventory", "reservation"),
    "ProcessPayment": ("payments", "payment"),
    "ReportPaymentOutcome": ("payments", "payment"),
    "RefundPayment": ("payments", "payment"),
}

_SAGA_FIELDS = (
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
)
# What is read of a saga row: the domain's fields, then its version and start.
_LOADED_FIELDS = (
    "order_id",
    "items",
    "amount",
    "payment_method",
    "payment_token",
    *_SAGA_FIELDS,
    "version",
    "created_at",
)
# What a new saga row holds (every column, none left to a default).
_INSERTED_FIELDS = (*_LOADED_FIELDS, "customer_id", "updated_at")
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
_NEXT_ATTEMPT_SQL = (
    f"(SELECT COUNT(*) FROM {SagaStepAttempt._meta.db_table} WHERE saga_id = %s AND step = %s) + 1"
)

# A statement and its parameters.


@dataclass(slots=True)
class _Locked:
    """A saga as read (under its row lock), with what its row held then."""

    saga: domain.Saga
    version: int
    created_at: datetime
    state: str
    stored: tuple[Any, ...]  # the ``_SAGA_FIELDS`` as read, to write only what changed


def timing() -> domain.Timing:
    """The saga clocks from settings (read at call time so tests can override them)."""
    saga_timeout = float(settings.SAGA_TIMEOUT)
    return domain.Timing(
        saga_timeout=saga_timeout,
        step_timeout=float(getattr(settings, "SAGA_STEP_TIMEOUT", min(saga_timeout, 30.0))),
        step_retries=int(getattr(settings, "SAGA_STEP_RETRIES", 3)),
        resend_after=float(getattr(settings, "SAGA_RESEND_AFTER", 10.0)),
    )


def start_saga(
    *,
    order_id: str,
    customer_id: str,
    items: list[dict[str, Any]],
    total_amount: Decimal,
    payment: dict[str, Any],
    cause_id: str,
) -> None:
    """Create the saga (STARTED) and send ReserveInventory, in the caller's unit of work."""
    now = timezone.now()
    saga, effects = domain.Saga.start(
        order_id=order_id,
        items=items,
        amount=str(Decimal(total_amount).quantize(Decimal("0.01"))),
        payment_method=str(payment.get("method", "")),
        payment_token=str(payment.get("token", "")),
        now=now,
        timing=timing(),
    )
    _record_new_saga(saga, effects, customer_id=customer_id, cause_id=cause_id, now=now)


def react(message: Message) -> None:
    """Advance the saga of the order ``message`` is about (an answer from inventory or payments)."""
    order_id = str(message.data.get("order_id") or message.correlation_id)
    row = _locked(order_id)
    if row is None:
        logger.info("no saga for %s %s", message.type, order_id)
        return
    now = timezone.now()
    saga = row.saga
    # Only the answer to one of the step's own commands settles its attempts; a stale one is
    # recorded by the domain (SagaAnswerIgnored) and settles nothing.
    settles = saga.answers(message.type, message.causation_id)
    answered = _record_answer(order_id, message, now) if settles else []
    effects = saga.on_answer(
        message_type=message.type,
        data=message.data,
        causation_id=message.causation_id,
        now=now,
        timing=timing(),
    )
    _carry_out(row, saga, effects, cause_id=message.message_id, now=now, writes=answered)


def decide(
    order_id: str, decision: Callable[[domain.Saga, datetime], list[domain.Effect]], *, cause_id: str = ""
) -> domain.Saga:
    """Lock the saga, apply ``decision`` and carry out its effects; raises ``LookupError`` if absent.

    ``SagaRuleViolation`` from the decision propagates with nothing changed.
    """
    row = _locked(order_id)
    if row is None:
        raise LookupError(order_id)
    now = timezone.now()
    saga = row.saga
    effects = decision(saga, now)
    _carry_out(row, saga, effects, cause_id=cause_id, now=now)
    return saga


def sweep_timeouts(*, now: datetime | None = None, limit: int = 200) -> int:
    """Compensate or retry every open saga past its deadline; returns how many were acted on.

    A running saga before its expiry is only due to send its step again, and only when the
    pipeline to the contexts it talks to has drained (:func:`eventstore.backlog.waiting`): a
    step merely queued behind others is not lost, and sending it again under load would only
    lengthen the queue. While messages wait, such sagas are left alone until it drains or their
    expiry comes.
    """
    now = now or timezone.now()
    open_sagas = SagaInstance.objects.filter(deadline__lte=now, needs_attention=False).exclude(
        state__in=domain.TERMINAL
    )
    if _pipeline_busy(open_sagas, now):
        open_sagas = open_sagas.exclude(state__in=domain.RUNNING, expires_at__gt=now)
    due = list(open_sagas.order_by("deadline").values_list("order_id", flat=True)[:limit])
    acted = 0
    for order_id in due:
        with transaction.atomic():
            row = _locked(order_id, skip_locked=True)
            if row is None or row.saga.needs_attention or row.saga.deadline > now:
                continue
            saga = row.saga
            _time_out_attempts(order_id, saga, now)
            effects = saga.time_out(now=now, timing=timing())
            if effects:
                acted += 1
                _carry_out(row, saga, effects, cause_id="", now=now)
                if saga.needs_attention:
                    logger.error(
                        "saga parked: compensation keeps failing",
                        extra={"order_id": order_id, "step": saga.step, "correlation_id": order_id},
                    )
    return acted


def _pipeline_busy(open_sagas: QuerySet[SagaInstance], now: datetime) -> bool:
    """Whether a running saga due to send its step again must wait: messages are still queued."""
    resending = open_sagas.filter(state__in=domain.RUNNING, expires_at__gt=now)
    if not resending.exists():
        return False
    return backlog.waiting(_SAGA_PIPELINE) > 0


def summary_of(order_id: str) -> dict[str, Any] | None:
    """The saga part of an order's read model."""
    row = _load(order_id)
    return None if row is None else row.saga.summary()


# --- internals ------------------------------------------------------------------------------


def _locked(order_id: str, *, skip_locked: bool = False) -> _Locked | None:
    return _load(order_id, lock=True, skip_locked=skip_locked)


def _load(order_id: str, *, lock: bool = False, skip_locked: bool = False) -> _Locked | None:
    """The saga of ``order_id`` (its row locked if ``lock``), or ``None``."""
    with connection.cursor() as cursor:
        cursor.execute(_select_sql(lock=lock, skip_locked=skip_locked), [order_id])
        found = cursor.fetchone()
    if found is None:
        return None
    values = list(found)
    for index, col, converters in _column_converters():
        for converter in converters:
            values[index] = converter(values[index], col, connection)
    order_id, items, amount, payment_method, payment_token, *fields, version, created_at = values
    stored = tuple(fields)
    state = dict(zip(_SAGA_FIELDS, fields, strict=True))
    # The domain changes these in place; ``stored`` keeps what was read.
    state["pending"] = list(state["pending"])
    state["commands"] = {step: list(ids) for step, ids in (state["commands"] or {}).items()}
    saga = domain.Saga(
        order_id=order_id,
        items=list(items),
        amount=str(amount),
        payment_method=payment_method,
        payment_token=payment_token,
        **state,
    )
    return _Locked(saga=saga, version=version, created_at=created_at, state=saga.state, stored=stored)


_select_cache: dict[tuple[str, bool, bool], str] = {}


def _select_sql(*, lock: bool, skip_locked: bool) -> str:
    key = (connection.vendor, lock, skip_locked)
    sql = _select_cache.get(key)
    if sql is None:
        quote = connection.ops.quote_name
        columns = ", ".join(quote(str(column(SagaInstance, name).column)) for name in _LOADED_FIELDS)
        sql = (
            f"SELECT {columns} FROM {quote(SagaInstance._meta.db_table)} "
            f"WHERE {quote(str(column(SagaInstance, 'order_id').column))} = %s"
        )
        # As the ORM does: a backend without row locks (SQLite) locks the whole database instead.
        if lock and connection.features.has_select_for_update:
            sql += " FOR UPDATE"
            if skip_locked and connection.features.has_select_for_update_skip_locked:
                sql += " SKIP LOCKED"
        _select_cache[key] = sql
    return sql


_converter_cache: dict[str, list[tuple[int, Any, list[Callable[..., Any]]]]] = {}


def _column_converters() -> list[tuple[int, Any, list[Callable[..., Any]]]]:
    """The backend's and the fields' converters of the loaded columns (as the ORM applies them)."""
    found = _converter_cache.get(connection.vendor)
    if found is None:
        found = []
        for index, name in enumerate(_LOADED_FIELDS):
            col = column(SagaInstance, name).get_col(SagaInstance._meta.db_table)
            converters = [*connection.ops.get_db_converters(col), *col.get_db_converters(connection)]
            if converters:
                found.append((index, col, converters))
        _converter_cache[connection.vendor] = found
    return found


def _carry_out(
    row: _Locked,
    saga: domain.Saga,
    effects: Sequence[domain.Effect],
    *,
    cause_id: str,
    now: datetime,
    writes: Sequence[Statement] = (),
    customer_id: str | None = None,
) -> None:
    """Carry out ``effects`` and store the saga (INSERT it when ``customer_id`` is given).

    ``writes`` (the answer's) go with the saga's own: one statement per table, all of them in one
    on PostgreSQL.
    """
    records: list[NewEvent] = []
    transitions: list[tuple[Any, ...]] = []
    sent: list[tuple[domain.Send, Message]] = []
    changes: list[domain.OrderEffect] = []
    for effect in effects:
        if isinstance(effect, domain.Record):
            records.append(NewEvent(effect.type, effect.data))
            if effect.type == "SagaTransitioned":
                transitions.append(_transition(saga.order_id, effect.data, cause_id, now))
        elif isinstance(effect, domain.Send):
            sent.append((effect, _send(saga, effect, cause_id)))
        else:
            changes.append(effect)
    if changes:
        # In effect order, with one read of the order and one append for all of them.
        orders_public.change_order(order_id=saga.order_id, changes=changes, cause_id=cause_id)
    if saga.state in domain.TERMINAL and row.state not in domain.TERMINAL:
        metrics.observe_saga_end(state=saga.state, seconds=(now - row.created_at).total_seconds())
    expected_version = row.version
    new = customer_id is not None
    statements = list(writes)
    if customer_id is not None:
        statements.append(_insert_saga(saga, customer_id, version=len(records), now=now))
    else:
        statements.append(_update_saga(row, saga, version=row.version + len(records), now=now))
    if transitions:
        statements.append(insert_statement(SagaTransition, _TRANSITION_FIELDS, transitions))
    later: list[Statement] = []
    if sent:
        first, *later = _insert_attempts(saga.order_id, sent, now, new=new)
        statements.append(first)
    _execute(statements)
    for statement in later:
        _execute([statement])
    if records:
        append(
            context=CONTEXT,
            aggregate_type="saga",
            aggregate_id=f"saga-{saga.order_id}",
            expected_version=expected_version,
            events=records,
            correlation_id=saga.order_id,
            causation_id=cause_id,
        )


def _record_new_saga(
    saga: domain.Saga, effects: Sequence[domain.Effect], *, customer_id: str, cause_id: str, now: datetime
) -> None:
    """Record a new saga in the open unit of work: its row, transitions, step attempts and events.

    Buffered, not executed: a batch of orders placed together (orders/intake.py) writes the
    rows of all its new sagas with one INSERT per table at its commit. A new saga has no
    earlier attempt, so each step's attempts are numbered here; it changes no order yet.
    """
    unit = current()
    if unit is None:
        raise RuntimeError("a saga starts inside the unit of work that places its order")
    records: list[NewEvent] = []
    transitions: list[tuple[Any, ...]] = []
    attempts: list[tuple[Any, ...]] = []
    for effect in effects:
        if isinstance(effect, domain.Record):
            records.append(NewEvent(effect.type, effect.data))
            if effect.type == "SagaTransitioned":
                transitions.append(_transition(saga.order_id, effect.data, cause_id, now))
        elif isinstance(effect, domain.Send):
            message = _send(saga, effect, cause_id)
            number = 1 + sum(1 for attempt in attempts if attempt[1] == effect.step)
            error = "" if effect.tracked else "late effect undone after the saga ended"
            attempts.append(
                (
                    saga.order_id,
                    effect.step,
                    effect.command,
                    number,
                    message.message_id,
                    now,
                    SagaStepAttempt.PENDING,
                    None,
                    "",
                    error,
                )
            )
        else:
            raise TypeError(f"a new saga cannot carry out {effect!r}")
    unit.insert(
        SagaInstance, _INSERTED_FIELDS, [_new_saga_values(saga, customer_id, version=len(records), now=now)]
    )
    unit.insert(SagaTransition, _TRANSITION_FIELDS, transitions)
    unit.insert(SagaStepAttempt, _ATTEMPT_FIELDS, attempts)
    append(
        context=CONTEXT,
        aggregate_type="saga",
        aggregate_id=f"saga-{saga.order_id}",
        expected_version=0,
        events=records,
        correlation_id=saga.order_id,
        causation_id=cause_id,
    )


def _execute(statements: Sequence[Statement]) -> None:
    """Run ``statements`` in order; on PostgreSQL as one (the first ones as CTEs of the last).

    The parts of one statement see the same snapshot: none may depend on another's effect.
    """
    if len(statements) > 1 and connection.vendor == "postgresql":
        *first, last = statements
        sql = "WITH " + ", ".join(f"w{i} AS ({sql})" for i, (sql, _) in enumerate(first)) + " " + last[0]
        statements = [(sql, [param for _, params in statements for param in params])]
    with connection.cursor() as cursor:
        for sql, params in statements:
            cursor.execute(sql, params)


def _insert_saga(saga: domain.Saga, customer_id: str, *, version: int, now: datetime) -> Statement:
    return insert_statement(
        SagaInstance, _INSERTED_FIELDS, [_new_saga_values(saga, customer_id, version=version, now=now)]
    )


def _new_saga_values(saga: domain.Saga, customer_id: str, *, version: int, now: datetime) -> list[Any]:
    """A new saga row's values, in ``_INSERTED_FIELDS`` order."""
    values = {name: getattr(saga, name) for name in _SAGA_FIELDS}
    values.update(
        order_id=saga.order_id,
        items=saga.items,
        amount=Decimal(saga.amount),
        payment_method=saga.payment_method,
        payment_token=saga.payment_token,
        version=version,
        created_at=now,
        customer_id=customer_id,
        updated_at=now,
    )
    return [values[name] for name in _INSERTED_FIELDS]


def _update_saga(row: _Locked, saga: domain.Saga, *, version: int, now: datetime) -> Statement:
    """The UPDATE of what the step changed in the saga row (always its ``updated_at``)."""
    changed: list[tuple[str, Any]] = [
        (name, value)
        for name, old in zip(_SAGA_FIELDS, row.stored, strict=True)
        if (value := getattr(saga, name)) != old
    ]
    changed.append(("updated_at", now))
    if version != row.version:
        changed.append(("version", version))
    quote = connection.ops.quote_name
    assignments = []
    params: list[Any] = []
    for name, value in changed:
        field = column(SagaInstance, name)
        assignments.append(f"{quote(str(field.column))} = %s")
        params.append(field.get_db_prep_save(value, connection))
    params.append(saga.order_id)
    sql = (
        f"UPDATE {quote(SagaInstance._meta.db_table)} SET {', '.join(assignments)} "
        f"WHERE {quote(str(column(SagaInstance, 'order_id').column))} = %s"
    )
    return sql, params


def _send(saga: domain.Saga, effect: domain.Send, cause_id: str) -> Message:
    context, aggregate_type = _TARGETS[effect.command]
    return send(
        context=context,
        command=effect.command,
        aggregate_type=aggregate_type,
        aggregate_id=f"{aggregate_type}-{saga.order_id}",
        data=effect.data,
        correlation_id=saga.order_id,
        causation_id=cause_id,
        message_id=effect.command_id,
    )


def _insert_attempts(
    order_id: str, sent: Sequence[tuple[domain.Send, Message]], now: datetime, *, new: bool
) -> list[Statement]:
    """The INSERTs of the step attempts of the commands just sent, each numbered within its step.

    A new saga has no earlier attempt; otherwise the number is counted in the INSERT itself
    (the saga row is locked, so no one else adds attempts meanwhile). A step sent twice in one
    go (the domain never does) goes in a later INSERT, which counts the earlier one.
    """
    rounds: list[list[tuple[Any, ...]]] = []
    for effect, message in sent:
        index = next((i for i, r in enumerate(rounds) if all(a[1] != effect.step for a in r)), len(rounds))
        if index == len(rounds):
            rounds.append([])
        attempt: int | Expression = (
            index + 1 if new else Expression(_NEXT_ATTEMPT_SQL, (order_id, effect.step))
        )
        error = "" if effect.tracked else "late effect undone after the saga ended"
        rounds[index].append(
            (
                order_id,
                effect.step,
                effect.command,
                attempt,
                message.message_id,
                now,
                SagaStepAttempt.PENDING,
                None,
                "",
                error,
            )
        )
    return [insert_statement(SagaStepAttempt, _ATTEMPT_FIELDS, batch) for batch in rounds]


def _transition(order_id: str, data: dict[str, Any], cause_id: str, now: datetime) -> tuple[Any, ...]:
    return (
        order_id,
        now,
        data["from_state"],
        data["to_state"],
        data.get("step"),
        str(data.get("reason", ""))[:500],
        cause_id,
    )


_ANSWER_SQL: dict[str, str] = {}


def _record_answer(order_id: str, message: Message, now: datetime) -> list[Statement]:
    """The UPDATE settling the pending attempts of the step ``message`` answers (none if none)."""
    step = domain.ANSWERS.get(message.type)
    if step is None:
        return []
    steps = [step, domain.AWAIT_PAYMENT] if step == domain.PAY else [step]
    failed = message.type in ("InventoryReservationFailed", "PaymentFailed")
    error = str(message.data.get("error") or message.data.get("reason") or "") if failed else ""
    key = f"{connection.vendor}:{len(steps)}"
    sql = _ANSWER_SQL.get(key)
    if sql is None:
        quote = connection.ops.quote_name
        sql = (
            f"UPDATE {quote(SagaStepAttempt._meta.db_table)} "
            f"SET {quote('outcome')} = %s, {quote('answered_at')} = %s, {quote('answer')} = %s, "
            f"{quote('error')} = %s WHERE {quote('saga_id')} = %s AND {quote('outcome')} = %s "
            f"AND {quote('step')} IN ({', '.join(['%s'] * len(steps))})"
        )
        _ANSWER_SQL[key] = sql
    answered_at = column(SagaStepAttempt, "answered_at").get_db_prep_save(now, connection)
    outcome = SagaStepAttempt.FAILED if failed else SagaStepAttempt.SUCCEEDED
    params = [outcome, answered_at, message.type, error[:2000], order_id, SagaStepAttempt.PENDING, *steps]
    return [(sql, params)]


def _time_out_attempts(order_id: str, saga: domain.Saga, now: datetime) -> None:
    steps = saga.pending if saga.state == domain.COMPENSATING else [saga.step]
    SagaStepAttempt.objects.filter(saga_id=order_id, step__in=steps, outcome=SagaStepAttempt.PENDING).update(
        outcome=SagaStepAttempt.TIMED_OUT, answered_at=now, error="no answer before the deadline"
    )
