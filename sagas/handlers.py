"""Saga handlers: load the saga, let the domain decide, record what it decided.

Every entry point runs in the caller's transaction (the consumer's, with its inbox row, or the
orders handler's), so the saga row, its events, the commands it sends and the order's terminal
event commit together.

Inside a unit of work (``eventstore.unit_of_work``: a consumer's batch, one message) a saga is
loaded once, into the unit's identity map: the batch's sagas are loaded and locked together by
:func:`lock_sagas` (the context's preparer), so two answers about one saga in a batch see each
other's effects, and everything the batch decided is written when the unit flushes, one
statement for all the sagas (``sagas.recorder``). Outside a unit (the API, the admin) the same
code loads one saga and writes it at once.

Each transition of a saga is logged at INFO once it commits ("saga transitioned", with the
states, the step and the reason), a step that timed out at WARNING; the order id is the
``correlation_id`` of every line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any

from django.conf import settings
from django.utils import timezone

from config import metrics
from config.logging import log_on_commit
from eventstore import backlog, catalogue
from eventstore.messages import Message
from eventstore.store import append, send
from eventstore.unit_of_work import UnitOfWork, current, unit_of_work
from inventory import public as inventory
from payments import public as payments

from . import domain, ports
from .events import (
    SagaEvent,
    SagaManuallyCompensated,
    SagaManuallyFailed,
    SagaStepRetried,
    SagaStepTimedOut,
    SagaTransitioned,
)
from .models import SagaStepAttempt
from .recorder import Attempt, Changes, Loaded, SagaRow, Settlement, Transition, recorder

logger = logging.getLogger(__name__)

CONTEXT = "sagas"

# The contexts whose queues carry a saga's commands and answers.
_SAGA_PIPELINE = ("inventory", "payments", CONTEXT)

# What each event of inventory and payments tells the saga (the events it subscribes to).
ANSWERS: dict[str, domain.Answer] = {
    inventory.InventoryReserved.event_type: domain.Answer.RESERVED,
    inventory.InventoryReservationFailed.event_type: domain.Answer.RESERVATION_FAILED,
    payments.PaymentProcessed.event_type: domain.Answer.PAYMENT_PROCESSED,
    payments.PaymentFailed.event_type: domain.Answer.PAYMENT_FAILED,
    inventory.InventoryConfirmed.event_type: domain.Answer.CONFIRMED,
    inventory.InventoryReleased.event_type: domain.Answer.RELEASED,
    payments.PaymentRefunded.event_type: domain.Answer.REFUNDED,
}

# The saga events logged (when their transaction commits): level and line.
_LOGGED: dict[type[SagaEvent], tuple[int, str]] = {
    SagaTransitioned: (logging.INFO, "saga transitioned"),
    SagaStepRetried: (logging.INFO, "saga step retried by an operator"),
    SagaManuallyCompensated: (logging.INFO, "saga compensation forced by an operator"),
    SagaManuallyFailed: (logging.INFO, "saga marked failed by an operator"),
}

# Which context and stream each command goes to.
_TARGETS = {
    "ReserveInventory": ("inventory", "reservation"),
    "ConfirmInventory": ("inventory", "reservation"),
    "ReleaseInventory": ("inventory", "reservation"),
    "ProcessPayment": ("payments", "payment"),
    "ReportPaymentOutcome": ("payments", "payment"),
    "RefundPayment": ("payments", "payment"),
}


@dataclass(slots=True)
class _Tracked:
    """A saga as loaded (or just started), with what it still has to write.

    ``customer_id`` is set for a new saga (its row is inserted); ``updated_at`` once a decision
    changed it (its row is written). Attempts recorded here and not yet written are settled in
    memory; those already in the table by a :class:`Settlement`, once per step.
    """

    saga: domain.Saga
    version: int
    created_at: datetime
    customer_id: str | None = None
    updated_at: datetime | None = None
    settlements: list[Settlement] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    settled_steps: set[str] = field(default_factory=set)

    def settle(
        self, steps: Sequence[str], outcome: str, now: datetime, *, answer: str = "", error: str = ""
    ) -> None:
        """End the step's PENDING attempts with ``outcome`` (those recorded here, and those stored)."""
        self.attempts = [
            replace(a, outcome=outcome, answered_at=now, answer=answer, error=error)
            if a.step in steps and a.outcome == SagaStepAttempt.PENDING
            else a
            for a in self.attempts
        ]
        stored = tuple(step for step in steps if step not in self.settled_steps)
        if stored:
            # Once settled, a step has no PENDING attempt left in the table (this unit adds none there).
            self.settled_steps.update(stored)
            self.settlements.append(Settlement(self.saga.order_id, stored, outcome, now, answer, error))

    def sent(self, effect: domain.Send, message: Message, now: datetime) -> None:
        """Record the attempt of a command just sent, numbered within its step."""
        earlier = sum(1 for a in self.attempts if a.step == effect.step)
        self.attempts.append(
            Attempt(
                order_id=self.saga.order_id,
                step=effect.step,
                command=effect.command,
                message_id=message.message_id,
                sent_at=now,
                # A new saga has no attempt in the table: its numbers are known here.
                number=earlier + 1 if self.customer_id is not None else None,
                earlier=earlier,
                error="" if effect.tracked else "late effect undone after the saga ended",
            )
        )

    def take_changes(self) -> Changes:
        """What to write, handed over once (the saga is then as stored)."""
        rows = []
        if self.updated_at is not None:
            rows.append(SagaRow(self.saga, self.version, self.created_at, self.updated_at, self.customer_id))
        changes = Changes(rows, self.settlements, self.transitions, self.attempts)
        self.customer_id, self.updated_at = None, None
        self.settlements, self.transitions, self.attempts = [], [], []
        self.settled_steps = set()
        return changes


class _Unsaved:
    """The sagas of one unit of work with something to write, written together at its flush."""

    def __init__(self) -> None:
        self.sagas: dict[str, _Tracked] = {}

    def write(self) -> None:
        changes = Changes([], [], [], [])
        for tracked in self.sagas.values():
            taken = tracked.take_changes()
            changes.sagas += taken.sagas
            changes.settlements += taken.settlements
            changes.transitions += taken.transitions
            changes.attempts += taken.attempts
        recorder().write(changes)


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
    """Create the saga (STARTED) and send ReserveInventory, in the caller's transaction.

    In a unit of work the new saga joins its identity map and its row is inserted at the flush,
    with the other sagas of the unit; outside one it is inserted at once.
    """
    now = timezone.now()
    saga, effects = domain.Saga.start(
        order_id=order_id,
        items=items,
        amount=str(Decimal(total_amount).quantize(Decimal("0.01"))),
        payment_method=str(payment.get("method", "")),
        payment_token=str(payment.get("token", "")),
        now=now,
        timing=timing(),
        customer_id=customer_id,
    )
    tracked = _Tracked(saga=saga, version=0, created_at=now, customer_id=customer_id)
    unit = current()
    if unit is not None:
        unit.identity(_key(order_id), lambda: tracked)
    _carry_out(tracked, effects, cause_id=cause_id, now=now, state_before=saga.state)


def lock_sagas(order_ids: Sequence[str]) -> None:
    """Load and lock the sagas of ``order_ids`` into the open unit of work, with one statement.

    Locked in ``order_id`` order: two batches about the same sagas never wait on each other in a
    circle. The orders they may change are announced to orders, which loads them together too.
    """
    unit = current()
    if unit is None:
        raise RuntimeError("lock_sagas runs inside a unit of work")
    found = recorder().load(order_ids, lock=True)
    for order_id in order_ids:
        unit.identity(_key(order_id), partial(_tracked, found.get(order_id)))
    ports.orders().expect_changes(sorted(found))


def react(message: Message) -> None:
    """Advance the saga of the order ``message`` is about (an answer from inventory or payments)."""
    order_id = order_of(message)
    tracked = _track(order_id)
    if tracked is None:
        logger.info("no saga for %s %s", message.type, order_id)
        return
    now = timezone.now()
    saga = tracked.saga
    state_before = saga.state
    # Only the answer to one of the step's own commands settles its attempts; a stale one is
    # recorded by the domain (SagaAnswerIgnored) and settles nothing.
    answer = ANSWERS[message.type]
    if saga.answers(answer, message.causation_id):
        _settle_answered(tracked, message, answer, now)
    effects = saga.on_answer(
        answer=answer,
        event_type=message.type,
        data=message.data,
        causation_id=message.causation_id,
        now=now,
        timing=timing(),
    )
    _carry_out(tracked, effects, cause_id=message.message_id, now=now, state_before=state_before)


def order_of(message: Message) -> str:
    """The order (and saga) an answer is about."""
    return str(message.data.get("order_id") or message.correlation_id)


def decide(
    order_id: str, decision: Callable[[domain.Saga, datetime], list[domain.Effect]], *, cause_id: str = ""
) -> domain.Saga:
    """Lock the saga, apply ``decision`` and carry out its effects; raises ``LookupError`` if absent.

    ``SagaRuleViolation`` from the decision propagates with nothing changed.
    """
    tracked = _track(order_id)
    if tracked is None:
        raise LookupError(order_id)
    now = timezone.now()
    saga = tracked.saga
    state_before = saga.state
    effects = decision(saga, now)
    _carry_out(tracked, effects, cause_id=cause_id, now=now, state_before=state_before)
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
    busy = recorder().any_resend_due(now) and backlog.waiting(_SAGA_PIPELINE) > 0
    acted = 0
    for order_id in recorder().due(now, limit=limit, resending=not busy):
        with unit_of_work():
            tracked = _track(order_id, skip_locked=True)
            if tracked is None or tracked.saga.needs_attention or tracked.saga.deadline > now:
                continue
            saga = tracked.saga
            state_before = saga.state
            steps = saga.pending if saga.state == domain.COMPENSATING else [saga.step or ""]
            tracked.settle(steps, SagaStepAttempt.TIMED_OUT, now, error="no answer before the deadline")
            _record(tracked)
            effects = saga.time_out(now=now, timing=timing())
            if effects:
                acted += 1
                _carry_out(tracked, effects, cause_id="", now=now, state_before=state_before)
                if saga.needs_attention:
                    logger.error(
                        "saga parked: compensation keeps failing",
                        extra={"order_id": order_id, "step": saga.step, "correlation_id": order_id},
                    )
    return acted


def summary_of(order_id: str) -> dict[str, Any] | None:
    """The saga part of an order's read model."""
    loaded = recorder().load([order_id], lock=False).get(order_id)
    return None if loaded is None else loaded.saga.summary()


# --- internals ------------------------------------------------------------------------------


def _key(order_id: str) -> tuple[str, str]:
    return ("sagas.saga", order_id)


def _track(order_id: str, *, skip_locked: bool = False) -> _Tracked | None:
    """The saga of ``order_id``, locked: the unit's (loaded once per unit), or loaded now."""

    def load() -> _Tracked | None:
        found = recorder().load([order_id], lock=True, skip_locked=skip_locked)
        return _tracked(found.get(order_id))

    unit = current()
    return load() if unit is None else unit.identity(_key(order_id), load)


def _tracked(loaded: Loaded | None) -> _Tracked | None:
    if loaded is None:
        return None
    return _Tracked(saga=loaded.saga, version=loaded.version, created_at=loaded.created_at)


def _record(tracked: _Tracked) -> None:
    """Write what ``tracked`` decided: at the unit's flush (with its other sagas), or now."""
    unit = current()
    if unit is None:
        recorder().write(tracked.take_changes())
        return
    unit.identity(_Unsaved, lambda: _unsaved_in(unit)).sagas.setdefault(tracked.saga.order_id, tracked)


def _unsaved_in(unit: UnitOfWork) -> _Unsaved:
    unsaved = _Unsaved()
    unit.before_flush(_Unsaved, unsaved.write)
    return unsaved


def _carry_out(
    tracked: _Tracked,
    effects: Sequence[domain.Effect],
    *,
    cause_id: str,
    now: datetime,
    state_before: str,
) -> None:
    """Carry out ``effects``: send the commands, change the order, record the saga and its events."""
    saga = tracked.saga
    for effect in effects:
        saga.apply(effect)  # the decision's change of state first: what follows reads the saga as left
    records: list[SagaEvent] = []
    changes: list[domain.OrderEffect] = []
    for effect in effects:
        if isinstance(effect, domain.Send):
            tracked.sent(effect, _send(saga, effect, cause_id), now)
        elif isinstance(effect, domain.OrderEffect):
            changes.append(effect)
        elif not isinstance(effect, domain.Changed):
            records.append(effect)
            _log(saga.order_id, effect)
            if isinstance(effect, SagaTransitioned):
                tracked.transitions.append(_transition(saga.order_id, effect, cause_id, now))
    if changes:
        # In effect order, with one read of the order and one append for all of them.
        ports.orders().change_order(order_id=saga.order_id, changes=changes, cause_id=cause_id)
    if saga.state in domain.TERMINAL and state_before not in domain.TERMINAL:
        metrics.observe_saga_end(state=saga.state, seconds=(now - tracked.created_at).total_seconds())
    expected_version = tracked.version
    tracked.version += len(records)
    tracked.updated_at = now
    _record(tracked)
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
        message_id=effect.command_id,
    )


def _transition(order_id: str, event: SagaTransitioned, cause_id: str, now: datetime) -> Transition:
    return Transition(
        order_id=order_id,
        at=now,
        from_state=event.from_state,
        to_state=event.to_state,
        step=event.step,
        reason=event.reason,
        cause_id=cause_id,
    )


def _log(order_id: str, record: SagaEvent) -> None:
    if isinstance(record, SagaStepTimedOut) and record.outcome == "RESENT":
        level, line = logging.INFO, "saga step sent again"
    elif isinstance(record, SagaStepTimedOut):
        level, line = logging.WARNING, "saga step timed out"
    elif type(record) in _LOGGED:
        level, line = _LOGGED[type(record)]
    else:
        return
    fields = {name: value for name, value in catalogue.to_data(record).items() if name != "order_id"}
    log_on_commit(logger, level, line, correlation_id=order_id, saga_event=record.event_type, **fields)


def _settle_answered(tracked: _Tracked, message: Message, answer: domain.Answer, now: datetime) -> None:
    """Settle the pending attempts of the step ``message`` answers (a payment's also settle its wait)."""
    step = domain.ANSWER_STEPS[answer]
    steps = [step, domain.AWAIT_PAYMENT] if step == domain.PAY else [step]
    failed = answer in domain.FAILED_ANSWERS
    error = str(message.data.get("error") or message.data.get("reason") or "") if failed else ""
    outcome = SagaStepAttempt.FAILED if failed else SagaStepAttempt.SUCCEEDED
    tracked.settle(steps, outcome, now, answer=message.type, error=error[:2000])
