"""Saga handlers: lock the saga row, let the domain decide, carry out its effects in one transaction.

Every entry point runs inside the caller's transaction (the consumer's, with its inbox row, or
the orders handler's), so the saga row, its events, the commands it sends and the order's
terminal event commit together.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import IntegerField
from django.db.models.expressions import RawSQL
from django.utils import timezone

from config import metrics
from eventstore.messages import Message
from eventstore.store import NewEvent, append, send
from orders import public as orders_public

from . import domain
from .models import SagaInstance, SagaStepAttempt, SagaTransition

logger = logging.getLogger(__name__)

CONTEXT = "sagas"

# Which context and stream each command goes to.
_TARGETS = {
    "ReserveInventory": ("inventory", "reservation"),
    "ConfirmInventory": ("inventory", "reservation"),
    "ReleaseInventory": ("inventory", "reservation"),
    "ProcessPayment": ("payments", "payment"),
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
)
_NEXT_ATTEMPT_SQL = (
    f"(SELECT COUNT(*) FROM {SagaStepAttempt._meta.db_table} WHERE saga_id = %s AND step = %s) + 1"
)
# What a step of a saga changes in its row (the rest is set once, when it starts).
_UPDATED_FIELDS = (*_SAGA_FIELDS, "updated_at", "version")


def timing() -> domain.Timing:
    """The saga clocks from settings (read at call time so tests can override them)."""
    saga_timeout = float(settings.SAGA_TIMEOUT)
    return domain.Timing(
        saga_timeout=saga_timeout,
        step_timeout=float(getattr(settings, "SAGA_STEP_TIMEOUT", min(saga_timeout, 30.0))),
        step_retries=int(getattr(settings, "SAGA_STEP_RETRIES", 3)),
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
    """Create the saga (STARTED) and send ReserveInventory, in the caller's transaction."""
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
    row = SagaInstance(
        order_id=order_id,
        customer_id=customer_id,
        items=saga.items,
        amount=Decimal(saga.amount),
        payment_method=saga.payment_method,
        payment_token=saga.payment_token,
        created_at=now,
    )
    _copy_to_row(saga, row)
    _carry_out(row, saga, effects, cause_id=cause_id, now=now, new=True)


def react(message: Message) -> None:
    """Advance the saga of the order ``message`` is about (an answer from inventory or payments)."""
    order_id = str(message.data.get("order_id") or message.correlation_id)
    row = _locked(order_id)
    if row is None:
        logger.info("no saga for %s %s", message.type, order_id)
        return
    now = timezone.now()
    saga = _to_domain(row)
    _record_answer(row, message, now)
    effects = saga.on_answer(message_type=message.type, data=message.data, now=now, timing=timing())
    _carry_out(row, saga, effects, cause_id=message.message_id, now=now)


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
    saga = _to_domain(row)
    effects = decision(saga, now)
    _carry_out(row, saga, effects, cause_id=cause_id, now=now)
    return saga


def sweep_timeouts(*, now: datetime | None = None, limit: int = 200) -> int:
    """Compensate or retry every open saga past its deadline; returns how many were acted on."""
    now = now or timezone.now()
    due = list(
        SagaInstance.objects.filter(deadline__lte=now, needs_attention=False)
        .exclude(state__in=domain.TERMINAL)
        .order_by("deadline")
        .values_list("order_id", flat=True)[:limit]
    )
    acted = 0
    for order_id in due:
        with transaction.atomic():
            row = _locked(order_id, skip_locked=True)
            if row is None or row.needs_attention or row.deadline > now:
                continue
            saga = _to_domain(row)
            _time_out_attempts(row, saga, now)
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


def summary_of(order_id: str) -> dict[str, Any] | None:
    """The saga part of an order's read model."""
    row = SagaInstance.objects.filter(order_id=order_id).first()
    return None if row is None else _to_domain(row).summary()


# --- internals ------------------------------------------------------------------------------


def _locked(order_id: str, *, skip_locked: bool = False) -> SagaInstance | None:
    return SagaInstance.objects.select_for_update(skip_locked=skip_locked).filter(order_id=order_id).first()


def _to_domain(row: SagaInstance) -> domain.Saga:
    return domain.Saga(
        order_id=row.order_id,
        items=list(row.items),
        amount=str(row.amount),
        payment_method=row.payment_method,
        payment_token=row.payment_token,
        **{name: getattr(row, name) for name in _SAGA_FIELDS if name != "pending"},
        pending=list(row.pending),
    )


def _copy_to_row(saga: domain.Saga, row: SagaInstance) -> None:
    for name in _SAGA_FIELDS:
        setattr(row, name, getattr(saga, name))


def _carry_out(
    row: SagaInstance,
    saga: domain.Saga,
    effects: Sequence[domain.Effect],
    *,
    cause_id: str,
    now: datetime,
    new: bool = False,
) -> None:
    """Carry out ``effects`` and store the saga: one write per table (``new``: INSERT the row)."""
    records: list[NewEvent] = []
    transitions: list[SagaTransition] = []
    sent: list[tuple[domain.Send, Message]] = []
    changes: list[domain.OrderEffect] = []
    for effect in effects:
        if isinstance(effect, domain.Record):
            records.append(NewEvent(effect.type, effect.data))
            if effect.type == "SagaTransitioned":
                transitions.append(_transition(row, effect.data, cause_id, now))
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
    _copy_to_row(saga, row)
    row.updated_at = now
    row.version += len(records)
    if new:
        row.save(force_insert=True)
    else:
        row.save(update_fields=_UPDATED_FIELDS)
    if transitions:
        SagaTransition.objects.bulk_create(transitions)
    if sent:
        _record_attempts(row, sent, now, new=new)
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
    )


def _record_attempts(
    row: SagaInstance, sent: Sequence[tuple[domain.Send, Message]], now: datetime, *, new: bool
) -> None:
    """One INSERT of the step attempts of the commands just sent, each numbered within its step.

    A new saga has no earlier attempt; otherwise the number is counted in the INSERT itself
    (the saga row is locked, so no one else adds attempts meanwhile). A step sent twice in one
    go (the domain never does) goes in a later INSERT, which counts the earlier one.
    """
    rounds: list[list[SagaStepAttempt]] = []
    for effect, message in sent:
        index = next((i for i, r in enumerate(rounds) if all(a.step != effect.step for a in r)), len(rounds))
        if index == len(rounds):
            rounds.append([])
        attempt: int | RawSQL = index + 1 if new else _next_attempt(row.order_id, effect.step)
        rounds[index].append(
            SagaStepAttempt(
                saga=row,
                step=effect.step,
                command=effect.command,
                attempt=attempt,
                message_id=message.message_id,
                sent_at=now,
                error="" if effect.tracked else "late effect undone after the saga ended",
            )
        )
    for batch in rounds:
        SagaStepAttempt.objects.bulk_create(batch)


def _next_attempt(order_id: str, step: str) -> RawSQL:
    """The number of the next attempt of ``step``, computed by the INSERT that stores it."""
    return RawSQL(  # noqa: S611 - constant SQL, the values go as parameters
        _NEXT_ATTEMPT_SQL, (order_id, step), output_field=IntegerField()
    )


def _transition(row: SagaInstance, data: dict[str, Any], cause_id: str, now: datetime) -> SagaTransition:
    return SagaTransition(
        saga=row,
        at=now,
        from_state=data["from_state"],
        to_state=data["to_state"],
        step=data.get("step"),
        reason=str(data.get("reason", ""))[:500],
        cause_id=cause_id,
    )


def _record_answer(row: SagaInstance, message: Message, now: datetime) -> None:
    step = domain.ANSWERS.get(message.type)
    if step is None:
        return
    steps = [step, domain.AWAIT_PAYMENT] if step == domain.PAY else [step]
    failed = message.type in ("InventoryReservationFailed", "PaymentFailed")
    error = str(message.data.get("error") or message.data.get("reason") or "") if failed else ""
    SagaStepAttempt.objects.filter(saga=row, step__in=steps, outcome=SagaStepAttempt.PENDING).update(
        outcome=SagaStepAttempt.FAILED if failed else SagaStepAttempt.SUCCEEDED,
        answered_at=now,
        answer=message.type,
        error=error[:2000],
    )


def _time_out_attempts(row: SagaInstance, saga: domain.Saga, now: datetime) -> None:
    steps = saga.pending if saga.state == domain.COMPENSATING else [saga.step]
    SagaStepAttempt.objects.filter(saga=row, step__in=steps, outcome=SagaStepAttempt.PENDING).update(
        outcome=SagaStepAttempt.TIMED_OUT, answered_at=now, error="no answer before the deadline"
    )
