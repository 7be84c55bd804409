"""The order saga's rules: which state, which command, which order outcome follows each answer.

Pure Python (no Django). A :class:`Saga` follows the style of every aggregate here: a command
decides and returns what follows, changing nothing; :meth:`Saga.apply` is the only place its
state changes. A command's effects are what the handler must carry out in the same
transaction: commands to send (:class:`Send`), changes to the order (:class:`OrderEffect`),
events for the saga's own stream (``sagas.events``) and, last, the saga's own change of state
(:class:`Changed`), which the handler applies before carrying out the rest.

Two rules keep money and stock right whatever order messages arrive in:

- **An answer settles a step only if it answers one of that step's commands.** Every command
  the saga sends carries an id chosen here (``Send.command_id``), kept per step in
  ``Saga.commands``; an answer names the command it answers in its causation id. Any other
  answer (a stale one, a stock expiry, an operator's partial refund) settles nothing: it is
  recorded (``SagaAnswerIgnored``) and only its *effect* is taken into account.
- **Effects are tracked apart from steps.** A capture or a reservation heard in any state is
  noted (``captured``, ``reserved``); a saga that fails or is cancelled undoes what it noted,
  and one that has ended sends the undo at once. While compensating the saga never starts a
  charge: waiting for a payment's outcome asks payments to *report* it
  (``ReportPaymentOutcome``), a command that never charges.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from .events import (
    SagaAnswerIgnored,
    SagaEvent,
    SagaManuallyCompensated,
    SagaManuallyFailed,
    SagaParked,
    SagaStarted,
    SagaStepRetried,
    SagaStepTimedOut,
    SagaTransitioned,
)

STARTED = "STARTED"
INVENTORY_RESERVED = "INVENTORY_RESERVED"
PAYMENT_PROCESSING = "PAYMENT_PROCESSING"
COMPLETED = "COMPLETED"
COMPENSATING = "COMPENSATING"
COMPENSATED = "COMPENSATED"
FAILED = "FAILED"

STATES = (STARTED, INVENTORY_RESERVED, PAYMENT_PROCESSING, COMPLETED, COMPENSATING, COMPENSATED, FAILED)
RUNNING = frozenset({STARTED, INVENTORY_RESERVED, PAYMENT_PROCESSING})
TERMINAL = frozenset({COMPLETED, COMPENSATED, FAILED})

# Steps: the command the saga waits an answer for.
RESERVE = "RESERVE_INVENTORY"
PAY = "PROCESS_PAYMENT"
CONFIRM = "CONFIRM_INVENTORY"
RELEASE = "RELEASE_INVENTORY"
REFUND = "REFUND_PAYMENT"
# While compensating, a payment already asked for must be heard of before deciding on a refund.
AWAIT_PAYMENT = "AWAIT_PAYMENT_OUTCOME"


class Answer(StrEnum):
    """What an event of inventory or payments tells the saga.

    The saga's own words: ``sagas.handlers.ANSWERS`` maps the other contexts' event types (read
    through their ``public.py``) to these, so this module stays pure and names no foreign event.
    """

    RESERVED = "reserved"
    RESERVATION_FAILED = "reservation_failed"
    PAYMENT_PROCESSED = "payment_processed"
    PAYMENT_FAILED = "payment_failed"
    CONFIRMED = "confirmed"
    RELEASED = "released"
    REFUNDED = "refunded"


# Which step each answer settles (a payment outcome also settles AWAIT_PAYMENT_OUTCOME).
ANSWER_STEPS = {
    Answer.RESERVED: RESERVE,
    Answer.RESERVATION_FAILED: RESERVE,
    Answer.PAYMENT_PROCESSED: PAY,
    Answer.PAYMENT_FAILED: PAY,
    Answer.CONFIRMED: CONFIRM,
    Answer.RELEASED: RELEASE,
    Answer.REFUNDED: REFUND,
}
# The answers that report a failed step.
FAILED_ANSWERS = frozenset({Answer.RESERVATION_FAILED, Answer.PAYMENT_FAILED})

# How many command ids of one step are kept to match answers against.
_KEPT_COMMANDS = 8

CANCELLED_OUTCOME = "CANCELLED"
FAILED_OUTCOME = "FAILED"

# An operator's interventions (docs/architecture.md "Manual intervention"; the methods of the same names).
RETRY_STEP = "retry_step"
FORCE_COMPENSATION = "force_compensation"
FORCE_CANCELLATION = "force_cancellation"  # force_compensation(as_cancellation=True)
MARK_FAILED = "mark_failed"
INTERVENTIONS = (RETRY_STEP, FORCE_COMPENSATION, FORCE_CANCELLATION, MARK_FAILED)

# Why a saga needs a person to look at it: parked (a compensation kept failing), stuck past its
# deadline (the sweep did not act), or failed lately.
ATTENTION = "attention"
STUCK = "stuck"
FAILED_LATELY = "failed"
LOOK_KINDS = (ATTENTION, STUCK, FAILED_LATELY)


class SagaRuleViolation(Exception):
    """A request the saga's current state does not allow (e.g. cancelling a failed order)."""


@dataclass(frozen=True, slots=True)
class Timing:
    """The clocks of the saga.

    ``saga_timeout``: how long the saga may run before it is compensated (reason TIMEOUT).
    ``step_timeout`` and ``step_retries``: a compensation step unanswered for that long is sent
    again, with backoff, that many times, then parked. ``resend_after``: a forward step
    unanswered for that long is sent again (with backoff, until the saga's deadline), so a
    message lost anywhere costs seconds, not the order.
    """

    saga_timeout: float
    step_timeout: float
    step_retries: int
    resend_after: float = 10.0


@dataclass(frozen=True, slots=True)
class Send:
    """A command to send; ``step`` is the saga step it belongs to, ``command_id`` its message id.

    ``tracked`` False: an undo sent after the saga ended (no step waits for its answer).
    """

    command: str
    step: str
    data: dict[str, Any]
    tracked: bool = True
    command_id: str = ""


@dataclass(frozen=True, slots=True)
class OrderEffect:
    """A change to the order: ``status`` (running status), ``complete``, ``fail`` or ``cancel``."""

    action: str
    status: str = ""
    reason: str = ""
    by: str = ""


@dataclass(frozen=True, slots=True)
class Heard:
    """An answer as the saga hears it: what it says, its event type, data and causation id."""

    answer: Answer
    event_type: str
    data: dict[str, Any]
    causation_id: str


@dataclass(frozen=True, slots=True)
class Changed:
    """The saga's new values, those a decision changed (applied by :meth:`Saga.apply`).

    The saga's state is its row (``sagas.recorder``), not a replay of its stream: its stream
    records the transitions for the audit trail, and this change is what the row stores.
    """

    values: dict[str, Any]


Effect = Send | OrderEffect | SagaEvent | Changed


@dataclass(slots=True)
class Saga:
    """The persisted state of one order's saga."""

    order_id: str
    items: list[dict[str, Any]]
    amount: str
    payment_method: str
    # The card token, kept only while the saga may still send ProcessPayment (see _move).
    payment_token: str
    deadline: datetime
    # Whose order it is: ProcessPayment tells payments, which checks its readers by it.
    customer_id: str = ""
    state: str = STARTED
    step: str | None = RESERVE
    attempts: int = 1
    needs_attention: bool = False
    failure_reason: str | None = None
    outcome: str | None = None
    cancelled_by: str = ""
    cancel_reason: str = ""
    reserved: bool = False
    reservation_expires_at: datetime | None = None
    payment_requested: bool = False
    captured: bool = False
    confirmed: bool = False
    pending: list[str] = field(default_factory=list)
    order_status: str = "PENDING"
    # The last moment the saga may run forward (``deadline`` is the next moment to act).
    expires_at: datetime | None = None
    # The ids of the commands sent for each step still waiting for an answer.
    commands: dict[str, list[str]] = field(default_factory=dict)
    # The capture was refunded by the saga's own refund step.
    refunded: bool = False

    # --- starting -------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        *,
        order_id: str,
        items: list[dict[str, Any]],
        amount: str,
        payment_method: str,
        payment_token: str,
        now: datetime,
        timing: Timing,
        customer_id: str = "",
    ) -> tuple[Saga, list[Effect]]:
        """A new saga in STARTED that asks inventory to reserve the items."""
        saga = cls(
            order_id=order_id,
            customer_id=customer_id,
            items=items,
            amount=amount,
            payment_method=payment_method,
            payment_token=payment_token,
            deadline=now + timedelta(seconds=timing.saga_timeout),
            expires_at=now + timedelta(seconds=timing.saga_timeout),
        )
        saga._reset_deadline(now, timing)
        started = SagaStarted(order_id=order_id, state=STARTED, step=RESERVE, deadline=_iso(saga.expiry))
        return saga, [started, saga._command(RESERVE)]

    # --- answers from inventory and payments --------------------------------------------------

    def on_answer(
        self,
        *,
        answer: Answer,
        event_type: str,
        data: dict[str, Any],
        now: datetime,
        timing: Timing,
        causation_id: str = "",
    ) -> list[Effect]:
        """React to an event of another context about this order; duplicates change nothing.

        ``answer`` is what the event (of type ``event_type``) says; ``causation_id`` is the id
        of the command it answers (empty when it answers none).
        """
        handler = _REACTIONS[answer]
        heard = Heard(answer, event_type, data, causation_id)
        return self._decide(lambda work: handler(work, heard, now, timing))

    def answers(self, answer: Answer, causation_id: str) -> bool:
        """Whether this answer settles a command a step of the saga is waiting for."""
        step = ANSWER_STEPS[answer]
        steps = (step, AWAIT_PAYMENT) if step == PAY else (step,)
        return any(self._awaits(candidate, causation_id) for candidate in steps)

    def _on_reserved(self, heard: Heard, now: datetime, timing: Timing) -> list[Effect]:
        data, cause = heard.data, heard.causation_id
        if self.state == STARTED and self._awaits(RESERVE, cause):
            self._answered(RESERVE)
            self.reserved = True
            self.reservation_expires_at = _parse(data.get("expires_at"))
            effects = self._move(INVENTORY_RESERVED, None, "inventory reserved", now, timing)
            effects.append(self._order_status(INVENTORY_RESERVED))
            self.payment_requested = True
            effects += self._move(PAYMENT_PROCESSING, PAY, "payment requested", now, timing)
            effects.append(self._command(PAY))
            effects.append(self._order_status(PAYMENT_PROCESSING))
            return effects
        if self.state in RUNNING:
            # Held for this order all the same (a repeated answer, an operator's reservation).
            self.reserved = True
            return [self._ignored(heard)]
        return [self._ignored(heard), *self._late_inventory_effect()]

    def _on_reservation_failed(self, heard: Heard, now: datetime, timing: Timing) -> list[Effect]:
        data, cause = heard.data, heard.causation_id
        if self.state != STARTED or not self._awaits(RESERVE, cause):
            return [self._ignored(heard)]
        self._answered(RESERVE)
        reason = str(data.get("reason") or "OUT_OF_STOCK")
        if self.captured:
            # Paid already (an operator charged while the stock was being reserved): refund it.
            return self._compensate(outcome=FAILED_OUTCOME, reason=reason, by="", now=now, timing=timing)
        self.failure_reason = reason
        self.outcome = FAILED_OUTCOME
        effects = self._move(FAILED, None, self.failure_reason, now, timing)
        effects.append(self._finish_order())
        return effects

    def _on_payment_processed(self, heard: Heard, now: datetime, timing: Timing) -> list[Effect]:
        cause = heard.causation_id
        if self.state == PAYMENT_PROCESSING and self.step == PAY and self._awaits(PAY, cause):
            self._answered(PAY)
            self.captured = True
            moved = self._move(PAYMENT_PROCESSING, CONFIRM, "payment captured", now, timing)
            moved.append(self._command(CONFIRM))
            return moved
        effects: list[Effect] = []
        if not self.answers(Answer.PAYMENT_PROCESSED, cause):
            effects.append(self._ignored(heard))
        news = not self.captured
        self.captured = True
        if self.state in RUNNING or self.state == COMPLETED:
            # The saga may still complete with it; if it fails, its compensation refunds it.
            return effects
        if news:
            # A capture heard while failing, or after the saga ended, is refunded: never keep
            # money for an order that did not complete. The refund joins the pending steps
            # before the payment wait is settled, so the order cannot turn terminal ahead of it.
            effects += self._require_compensation(REFUND)
        if self.state == COMPENSATING and self._awaits(AWAIT_PAYMENT, cause):
            effects += self._settle(AWAIT_PAYMENT, now, timing)
        return effects

    def _on_payment_failed(self, heard: Heard, now: datetime, timing: Timing) -> list[Effect]:
        data, cause = heard.data, heard.causation_id
        if self.state == PAYMENT_PROCESSING and self.step == PAY and self._awaits(PAY, cause):
            self._answered(PAY)
            reason = str(data.get("reason") or "PAYMENT_UNAVAILABLE")
            if reason not in ("PAYMENT_DECLINED", "PAYMENT_UNAVAILABLE"):
                reason = "PAYMENT_UNAVAILABLE"
            # The payment is over without a capture (payments says so only once no call it
            # made can still land): there is nothing to wait for.
            self.payment_requested = False
            return self._compensate(outcome=FAILED_OUTCOME, reason=reason, by="", now=now, timing=timing)
        if self.state == COMPENSATING and self._awaits(AWAIT_PAYMENT, cause):
            self.payment_requested = False
            return self._settle(AWAIT_PAYMENT, now, timing)
        return [self._ignored(heard)]

    def _on_confirmed(self, heard: Heard, now: datetime, timing: Timing) -> list[Effect]:
        cause = heard.causation_id
        if self.state == PAYMENT_PROCESSING and self.step == CONFIRM and self._awaits(CONFIRM, cause):
            self._answered(CONFIRM)
            self.confirmed = True
            effects = self._move(COMPLETED, None, "inventory confirmed", now, timing)
            effects.append(self._finish_order())
            return effects
        if self.state in RUNNING or self.state == COMPLETED:
            return [self._ignored(heard)]
        self.confirmed = True
        return [self._ignored(heard), *self._late_inventory_effect()]

    def _on_released(self, heard: Heard, now: datetime, timing: Timing) -> list[Effect]:
        cause = heard.causation_id
        if self.state != COMPENSATING or not self._awaits(RELEASE, cause):
            # A stock expiry, a repeated answer, an operator's release: not this step's answer.
            return [self._ignored(heard)]
        self.reserved = False
        return self._settle(RELEASE, now, timing)

    def _on_refunded(self, heard: Heard, now: datetime, timing: Timing) -> list[Effect]:
        cause = heard.causation_id
        if self.state != COMPENSATING or not self._awaits(REFUND, cause):
            # An operator's partial refund, a repeated answer: not this step's answer.
            return [self._ignored(heard)]
        self.refunded = True
        return self._settle(REFUND, now, timing)

    # --- requests: cancellation, failure, timeout, manual intervention ------------------------

    def cancel(self, *, by: str, reason: str, now: datetime, timing: Timing) -> list[Effect]:
        """Compensate and end the order CANCELLED; a repeat while cancelling changes nothing."""
        return self._decide(lambda work: work._cancel(by=by, reason=reason, now=now, timing=timing))

    def fail(self, *, by: str, now: datetime, timing: Timing) -> list[Effect]:
        """Compensate and end the order FAILED with reason ADMIN; a repeat while failing changes nothing."""
        return self._decide(lambda work: work._fail(by=by, now=now, timing=timing))

    def time_out(self, *, now: datetime, timing: Timing) -> list[Effect]:
        """Called by the sweep at the deadline: send a stalled step again, compensate, or park."""
        return self._decide(lambda work: work._time_out(now=now, timing=timing))

    def retry_step(self, *, admin: str, now: datetime, timing: Timing) -> list[Effect]:
        """Send the current step's command(s) again on an operator's request."""
        return self._decide(lambda work: work._retry_step(admin=admin, now=now, timing=timing))

    def force_compensation(
        self, *, admin: str, as_cancellation: bool, now: datetime, timing: Timing
    ) -> list[Effect]:
        """Compensate now on an operator's request (order FAILED reason ADMIN, or CANCELLED)."""
        return self._decide(
            lambda work: work._force_compensation(
                admin=admin, as_cancellation=as_cancellation, now=now, timing=timing
            )
        )

    def mark_failed(self, *, admin: str, now: datetime, timing: Timing) -> list[Effect]:
        """End the saga FAILED without further compensation (an operator settled it by hand)."""
        return self._decide(lambda work: work._mark_failed(admin=admin, now=now, timing=timing))

    # --- state changes: only by applying --------------------------------------------------------

    def apply(self, effect: Effect) -> None:
        """Take the saga's change of state from a decision's effects (the others change nothing)."""
        if isinstance(effect, Changed):
            for name, value in effect.values.items():
                setattr(self, name, value)

    def _decide(self, rule: Callable[[Saga], list[Effect]]) -> list[Effect]:
        """Run ``rule`` on a working copy; return its effects and, last, what it changed.

        The rules read the state they have just changed (a transition resets the deadline the
        next step's command carries), so they run on a copy: the saga itself is left as it was,
        and a rule that refuses (``SagaRuleViolation``) leaves nothing half done.
        """
        work = replace(
            self,
            pending=list(self.pending),
            commands={step: list(ids) for step, ids in self.commands.items()},
        )
        effects = rule(work)
        values = {name: getattr(work, name) for name in _STATE if getattr(work, name) != getattr(self, name)}
        return [*effects, Changed(values)] if values else effects

    # --- the rules, on the working copy ------------------------------------------------------------

    def _cancel(self, *, by: str, reason: str, now: datetime, timing: Timing) -> list[Effect]:
        """Compensate and end the order CANCELLED; a repeat while cancelling changes nothing."""
        if self.state in (COMPENSATED, FAILED):
            raise SagaRuleViolation(f"the order is already {self.order_status}")
        if self.state == COMPENSATING:
            if self.outcome == CANCELLED_OUTCOME:
                return []
            failing = self.failure_reason or "compensating"
            raise SagaRuleViolation(f"the order is already failing ({failing}) and cannot be cancelled")
        return self._compensate(outcome=CANCELLED_OUTCOME, reason=reason, by=by, now=now, timing=timing)

    def _fail(self, *, by: str, now: datetime, timing: Timing) -> list[Effect]:
        """Compensate and end the order FAILED with reason ADMIN; a repeat while failing changes nothing."""
        if self.state in TERMINAL:
            raise SagaRuleViolation(f"the order is already {self.order_status}")
        if self.state == COMPENSATING:
            if self.outcome == FAILED_OUTCOME:
                return []
            raise SagaRuleViolation("the order is being cancelled and cannot be failed")
        return self._compensate(outcome=FAILED_OUTCOME, reason="ADMIN", by=by, now=now, timing=timing)

    def _time_out(self, *, now: datetime, timing: Timing) -> list[Effect]:
        """Called by the sweep at the deadline: send a stalled step again, compensate, or park.

        A forward step with no answer is sent again (commands are idempotent) until the saga's
        own deadline, which compensates it (reason TIMEOUT). A compensation step is sent again
        ``step_retries`` times with backoff, then the saga is parked for a person.
        """
        if self.needs_attention or now < self.deadline:
            return []
        if self.state in RUNNING:
            if now < self.expiry and self.step is not None:
                self.attempts += 1
                resent = SagaStepTimedOut(**self._step_data(outcome="RESENT"))
                wait = timing.resend_after * 2 ** min(self.attempts - 1, 5)
                self.deadline = min(now + timedelta(seconds=wait), self.expiry)
                return [resent, self._command(self.step)]
            timed_out = SagaStepTimedOut(**self._step_data(outcome="TIMEOUT"))
            compensation = self._compensate(
                outcome=FAILED_OUTCOME, reason="TIMEOUT", by="", now=now, timing=timing
            )
            return [timed_out, *compensation]
        if self.state != COMPENSATING:
            return []
        effects: list[Effect] = [SagaStepTimedOut(**self._step_data(outcome="TIMEOUT"))]
        if self.attempts > timing.step_retries:
            self.needs_attention = True
            effects.append(SagaParked(**self._step_data(outcome="PARKED")))
            return effects
        self.attempts += 1
        # Exponential backoff between retries of the same compensation step.
        self.deadline = now + timedelta(seconds=timing.step_timeout * 2 ** (self.attempts - 1))
        effects += [self._command(step) for step in self.pending]
        return effects

    def _retry_step(self, *, admin: str, now: datetime, timing: Timing) -> list[Effect]:
        """Send the current step's command(s) again on an operator's request."""
        if self.state in TERMINAL:
            raise SagaRuleViolation(f"a {self.state} saga has no step to retry")
        self.attempts += 1
        self.needs_attention = False
        self._reset_deadline(now, timing)
        steps = self.pending if self.state == COMPENSATING else [self.step or RESERVE]
        retried = SagaStepRetried(**self._step_data(outcome="RETRIED"), admin=admin)
        return [retried, *(self._command(step) for step in steps)]

    def _force_compensation(
        self, *, admin: str, as_cancellation: bool, now: datetime, timing: Timing
    ) -> list[Effect]:
        """Compensate now on an operator's request (order FAILED reason ADMIN, or CANCELLED)."""
        if self.state in (COMPENSATED, FAILED):
            raise SagaRuleViolation(f"a {self.state} saga has nothing left to compensate")
        if self.state == COMPLETED and not as_cancellation:
            raise SagaRuleViolation("a completed order can only be compensated as a cancellation")
        record = SagaManuallyCompensated(order_id=self.order_id, admin=admin, as_cancellation=as_cancellation)
        if self.state == COMPENSATING:
            self.needs_attention = False
            self.attempts += 1
            self._reset_deadline(now, timing)
            return [record, *(self._command(step) for step in self.pending)]
        outcome = CANCELLED_OUTCOME if as_cancellation else FAILED_OUTCOME
        return [record, *self._compensate(outcome=outcome, reason="ADMIN", by=admin, now=now, timing=timing)]

    def _mark_failed(self, *, admin: str, now: datetime, timing: Timing) -> list[Effect]:
        """End the saga FAILED without further compensation (an operator settled it by hand).

        Refused while the saga holds a capture it has not refunded: marking it failed would
        keep the money (force compensation refunds it).
        """
        if self.state in TERMINAL:
            raise SagaRuleViolation(f"a {self.state} saga cannot be marked failed")
        if self.captured and not self.refunded:
            raise SagaRuleViolation(
                "the payment of this order was captured and is not refunded: "
                "force compensation refunds it; marking the saga failed would keep the money"
            )
        record = SagaManuallyFailed(order_id=self.order_id, admin=admin, step=self.step)
        if self.outcome != CANCELLED_OUTCOME:
            self.outcome = FAILED_OUTCOME
            self.failure_reason = "ADMIN"
            self.cancelled_by = admin
        self.needs_attention = False
        self.pending = []
        self.commands = {}
        effects: list[Effect] = [record, *self._move(FAILED, None, "marked failed", now, timing)]
        effects.append(self._finish_order())
        return effects

    # --- summaries ------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """The ``saga`` object of GET /api/orders/{order_id}."""
        return {
            "state": self.state,
            "step": self.step,
            "attempts": self.attempts,
            "deadline": None if self.state in TERMINAL else _iso(self._shown_deadline()),
            "needs_attention": self.needs_attention,
        }

    # --- internals --------------------------------------------------------------------------

    def _compensate(
        self, *, outcome: str, reason: str, by: str, now: datetime, timing: Timing
    ) -> list[Effect]:
        self.outcome = outcome
        if outcome == CANCELLED_OUTCOME:
            self.cancelled_by, self.cancel_reason = by, reason
        else:
            self.failure_reason, self.cancelled_by = reason, by
        # A release is always sent: it also covers a reservation still in flight, and answers
        # "nothing held" when there is none.
        pending = [RELEASE]
        if self.captured:
            pending.append(REFUND)
        elif self.payment_requested:
            # The payment asked for answers its own command: any of those answers settles the wait.
            pending.append(AWAIT_PAYMENT)
            self.commands[AWAIT_PAYMENT] = list(self.commands.get(PAY, []))
        # Answers to forward steps are no longer awaited (their effects are still undone).
        self.commands = {step: ids for step, ids in self.commands.items() if step == AWAIT_PAYMENT}
        self.pending = pending
        effects = self._move(COMPENSATING, pending[0], f"compensating: {reason}", now, timing)
        # Asking for the payment's outcome at once also closes a payment whose request has not
        # arrived yet: a late ProcessPayment then finds it closed and never charges.
        effects += [self._command(step) for step in pending]
        return effects

    def _require_compensation(self, step: str) -> list[Effect]:
        """Undo an effect that arrived after compensation began (or ended)."""
        if self.state == COMPENSATING:
            if step in self.pending:
                return []
            self.pending.append(step)
            return [self._command(step)]
        if self.state in (COMPENSATED, FAILED):
            return [self._command(step, tracked=False)]
        return []

    def _late_inventory_effect(self) -> list[Effect]:
        if self.state in (COMPENSATING, COMPENSATED, FAILED):
            return self._require_compensation(RELEASE)
        return []

    def _settle(self, step: str, now: datetime, timing: Timing) -> list[Effect]:
        if step not in self.pending:
            return []
        self._answered(step)
        self.pending = [other for other in self.pending if other != step]
        if self.pending:
            return self._move(COMPENSATING, self.pending[0], f"{step} done", now, timing)
        effects = self._move(COMPENSATED, None, "compensation done", now, timing)
        effects.append(self._finish_order())
        return effects

    def _move(self, state: str, step: str | None, reason: str, now: datetime, timing: Timing) -> list[Effect]:
        previous_state, previous_step = self.state, self.step
        self.state, self.step = state, step
        self.attempts = 1 if step else 0
        if state in TERMINAL:
            self.needs_attention = False
        if not self.may_still_pay:
            # The token is no longer needed: forget it (payments holds its own copy until the
            # payment settles, and the saga's row must not keep it for the order's lifetime).
            self.payment_token = ""
        self._reset_deadline(now, timing)
        transitioned = SagaTransitioned(
            order_id=self.order_id,
            from_state=previous_state,
            to_state=state,
            from_step=previous_step,
            step=step,
            reason=reason,
        )
        return [transitioned]

    @property
    def may_still_pay(self) -> bool:
        """Whether the saga may still send ProcessPayment (before or at its payment step).

        Past it — the payment processed or failed, or the saga compensating or ended — it never
        does again (a compensation only asks for the outcome), so the card token is cleared.
        """
        return self.state in (STARTED, INVENTORY_RESERVED) or (
            self.state == PAYMENT_PROCESSING and self.step == PAY
        )

    @property
    def expiry(self) -> datetime:
        """The last moment the saga may run forward (rows written before it existed: the deadline)."""
        return self.expires_at or self.deadline

    def _shown_deadline(self) -> datetime:
        return self.expiry if self.state in RUNNING else self.deadline

    def _reset_deadline(self, now: datetime, timing: Timing) -> None:
        if self.state == COMPENSATING:
            self.deadline = now + timedelta(seconds=timing.step_timeout)
            return
        expiry = now + timedelta(seconds=timing.saga_timeout)
        # Held stock expires with the saga: never let the saga outlive its reservation.
        if self.reserved and not self.confirmed and self.reservation_expires_at is not None:
            expiry = min(expiry, self.reservation_expires_at)
        self.expires_at = expiry
        # The next moment to act: send the step again, or (at the expiry) compensate.
        self.deadline = min(now + timedelta(seconds=timing.resend_after), expiry)

    def _awaits(self, step: str, causation_id: str) -> bool:
        return bool(causation_id) and causation_id in self.commands.get(step, ())

    def _answered(self, step: str) -> None:
        self.commands.pop(step, None)

    def _ignored(self, heard: Heard) -> SagaAnswerIgnored:
        """A stale answer, recorded for the audit trail (it settles nothing)."""
        return SagaAnswerIgnored(
            order_id=self.order_id,
            type=heard.event_type,
            causation_id=heard.causation_id,
            state=self.state,
            step=self.step,
        )

    def _order_status(self, status: str) -> OrderEffect:
        self.order_status = status
        return OrderEffect("status", status=status)

    def _finish_order(self) -> OrderEffect:
        if self.state == COMPLETED:
            self.order_status = "COMPLETED"
            return OrderEffect("complete")
        if self.outcome == CANCELLED_OUTCOME:
            self.order_status = "CANCELLED"
            return OrderEffect("cancel", reason=self.cancel_reason, by=self.cancelled_by)
        self.order_status = "FAILED"
        return OrderEffect("fail", reason=self.failure_reason or "ADMIN")

    def _command(self, step: str, *, tracked: bool = True) -> Send:
        """The command of ``step``, with a new id that its answer will name (kept if ``tracked``)."""
        command, data = self._command_data(step)
        command_id = str(uuid.uuid4())
        if tracked:
            # The last few are enough: an answer to an older one is answered again by a newer one.
            self.commands[step] = [*self.commands.get(step, [])[-(_KEPT_COMMANDS - 1) :], command_id]
        return Send(command, step, data, tracked, command_id)

    def _command_data(self, step: str) -> tuple[str, dict[str, Any]]:
        order = {"order_id": self.order_id}
        if step == RESERVE:
            return "ReserveInventory", {
                **order,
                "items": self._reservation_items(),
                "expires_at": _iso(self.expiry),
            }
        if step == PAY:
            data = {
                **order,
                "customer_id": self.customer_id,
                "amount": self.amount,
                "method": self.payment_method,
                "token": self.payment_token,
            }
            return "ProcessPayment", data
        if step == AWAIT_PAYMENT:
            # Asks for the outcome of the payment already requested; never starts a charge.
            return "ReportPaymentOutcome", order
        if step == CONFIRM:
            return "ConfirmInventory", order
        if step == RELEASE:
            return "ReleaseInventory", {**order, "reason": self._undo_reason()}
        if step == REFUND:
            return "RefundPayment", {**order, "amount": None, "reason": self._undo_reason()}
        raise ValueError(f"unknown step {step}")

    def _reservation_items(self) -> list[dict[str, Any]]:
        return [{"product_id": item["product_id"], "quantity": item["quantity"]} for item in self.items]

    def _undo_reason(self) -> str:
        if self.outcome == CANCELLED_OUTCOME:
            return "CANCELLED"
        return self.failure_reason or "COMPENSATION"

    def _step_data(self, *, outcome: str) -> dict[str, Any]:
        """The members of the step events (timed out, parked, retried)."""
        return {"order_id": self.order_id, "step": self.step, "attempt": self.attempts, "outcome": outcome}


# Every field of the saga: what a decision may change.
_STATE = tuple(f.name for f in fields(Saga))

_REACTIONS: dict[Answer, Callable[[Saga, Heard, datetime, Timing], list[Effect]]] = {
    Answer.RESERVED: Saga._on_reserved,
    Answer.RESERVATION_FAILED: Saga._on_reservation_failed,
    Answer.PAYMENT_PROCESSED: Saga._on_payment_processed,
    Answer.PAYMENT_FAILED: Saga._on_payment_failed,
    Answer.CONFIRMED: Saga._on_confirmed,
    Answer.RELEASED: Saga._on_released,
    Answer.REFUNDED: Saga._on_refunded,
}


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _parse(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
