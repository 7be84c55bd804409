"""The ops console's reads and interventions of the sagas context (docs/console.md).

Reads: the sagas an operator should look at (parked, stuck past their deadline, failed
lately) and everything the saga of one order recorded (its row, transitions, step attempts).
Interventions: the operator's decisions of :class:`sagas.domain.Saga` (retry the step, force
compensation, mark failed), each recorded on the saga's stream as an event naming the admin.
The API (``config.console``) and the Django admin (``sagas.admin``) both act through here, so
the two consoles cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from eventstore.store import load_stream

from . import domain, handlers
from .events import INTERVENTION_EVENTS
from .models import SagaInstance

# The event types of an operator's interventions, each naming the admin.
_INTERVENTIONS = frozenset(event.event_type for event in INTERVENTION_EVENTS)

# Which sagas need a look: parked (a compensation kept failing), stuck (not terminal and past
# the deadline at which the once-a-second sweep should have acted), failed lately.
ATTENTION, STUCK, FAILED = domain.ATTENTION, domain.STUCK, domain.FAILED_LATELY
KINDS = domain.LOOK_KINDS

# Seconds past its deadline before an open saga counts as stuck (as the money audit's "stalled").
STUCK_GRACE_SECONDS = 10.0
# How far back "failed lately" looks.
FAILED_WINDOW = timedelta(hours=1)

Decision = Callable[[domain.Saga, datetime], list[domain.Effect]]


@dataclass(frozen=True, slots=True)
class Intervention:
    """What an operator's action did: the event it recorded and the saga after it."""

    order_id: str
    action: str
    event: dict[str, Any]
    saga: dict[str, Any]


# --- which sagas need a look --------------------------------------------------------------------


def _conditions(now: datetime) -> dict[str, Q]:
    return {
        ATTENTION: Q(needs_attention=True),
        STUCK: ~Q(state__in=domain.TERMINAL)
        & Q(needs_attention=False)
        & Q(deadline__lt=now - timedelta(seconds=STUCK_GRACE_SECONDS)),
        FAILED: Q(order_status="FAILED", updated_at__gte=now - FAILED_WINDOW),
    }


def sagas_to_look_at(
    *, kinds: tuple[str, ...] = KINDS, offset: int = 0, limit: int = 20, now: datetime | None = None
) -> tuple[int, list[dict[str, Any]]]:
    """``(count, rows)``: the sagas of ``kinds``, most recently changed first, one page of them.

    Each row says which of the kinds it is (``reasons``): a parked saga past its deadline is
    parked, not stuck (the sweep leaves parked sagas to a person).
    """
    now = now or timezone.now()
    conditions = _conditions(now)
    wanted = Q()
    for kind in kinds:
        wanted |= conditions[kind]
    rows = SagaInstance.objects.filter(wanted).order_by("-updated_at", "order_id")
    count = rows.count()
    page = list(rows[offset : offset + limit])
    return count, [_listed(saga, now) for saga in page]


def counts_to_look_at(*, now: datetime | None = None) -> dict[str, int]:
    """How many sagas are parked, stuck and failed lately (for the console's front page)."""
    now = now or timezone.now()
    return {kind: SagaInstance.objects.filter(q).count() for kind, q in _conditions(now).items()}


def _listed(saga: SagaInstance, now: datetime) -> dict[str, Any]:
    reasons = []
    if saga.needs_attention:
        reasons.append(ATTENTION)
    elif saga.state not in domain.TERMINAL and saga.deadline < now - timedelta(seconds=STUCK_GRACE_SECONDS):
        reasons.append(STUCK)
    if saga.order_status == "FAILED" and saga.updated_at >= now - FAILED_WINDOW:
        reasons.append(FAILED)
    return {
        "order_id": saga.order_id,
        "customer_id": saga.customer_id,
        "state": saga.state,
        "step": saga.step,
        "attempts": saga.attempts,
        "order_status": saga.order_status,
        "failure_reason": saga.failure_reason,
        "needs_attention": saga.needs_attention,
        "deadline": saga.deadline,
        "created_at": saga.created_at,
        "updated_at": saga.updated_at,
        "reasons": reasons,
    }


# --- one order's saga ---------------------------------------------------------------------------


def saga_record(order_id: str) -> dict[str, Any] | None:
    """The saga of ``order_id`` as stored (never its payment token), transitions and step attempts."""
    saga = SagaInstance.objects.filter(order_id=order_id).first()
    if saga is None:
        return None
    transitions = [
        {
            "at": t.at,
            "from_state": t.from_state,
            "to_state": t.to_state,
            "step": t.step,
            "reason": t.reason,
            "cause_id": t.cause_id,
        }
        for t in saga.transitions.order_by("id")
    ]
    attempts = [
        {
            "step": a.step,
            "command": a.command,
            "attempt": a.attempt,
            "message_id": a.message_id,
            "sent_at": a.sent_at,
            "outcome": a.outcome,
            "answered_at": a.answered_at,
            "answer": a.answer,
            "error": a.error,
        }
        for a in saga.step_attempts.order_by("id")
    ]
    return {
        "state": saga.state,
        "step": saga.step,
        "attempts": saga.attempts,
        "needs_attention": saga.needs_attention,
        "deadline": saga.deadline,
        "expires_at": saga.expires_at,
        "outcome": saga.outcome,
        "failure_reason": saga.failure_reason,
        "cancelled_by": saga.cancelled_by,
        "order_status": saga.order_status,
        "pending": saga.pending,
        "reserved": saga.reserved,
        "payment_requested": saga.payment_requested,
        "captured": saga.captured,
        "refunded": saga.refunded,
        "confirmed": saga.confirmed,
        "created_at": saga.created_at,
        "updated_at": saga.updated_at,
        "transitions": transitions,
        "step_attempts": attempts,
    }


# --- interventions ------------------------------------------------------------------------------

RETRY_STEP = domain.RETRY_STEP
FORCE_COMPENSATION = domain.FORCE_COMPENSATION
FORCE_CANCELLATION = domain.FORCE_CANCELLATION
MARK_FAILED = domain.MARK_FAILED
ACTIONS = domain.INTERVENTIONS


def decision(action: str, *, admin: str) -> Decision:
    """The domain decision behind an operator's ``action`` (one of :data:`ACTIONS`)."""
    if action == RETRY_STEP:
        return lambda saga, now: saga.retry_step(admin=admin, now=now, timing=handlers.timing())
    if action in (FORCE_COMPENSATION, FORCE_CANCELLATION):
        as_cancellation = action == FORCE_CANCELLATION
        return lambda saga, now: saga.force_compensation(
            admin=admin, as_cancellation=as_cancellation, now=now, timing=handlers.timing()
        )
    if action == MARK_FAILED:
        return lambda saga, now: saga.mark_failed(admin=admin, now=now, timing=handlers.timing())
    raise ValueError(f"unknown intervention {action}")


def intervene(order_id: str, action: str, *, admin: str) -> Intervention:
    """Carry out ``action`` on the saga of ``order_id`` in one transaction.

    Raises ``LookupError`` when there is no such saga and
    :class:`~sagas.domain.SagaRuleViolation` (nothing changed) when the saga's state refuses it.
    """
    stream = f"saga-{order_id}"
    with transaction.atomic():
        saga = handlers.decide(order_id, decision(action, admin=admin))
        # The saga row stays locked until the commit: the last intervention on its stream is this one.
        recorded = next(m for m in reversed(load_stream(stream)) if m.type in _INTERVENTIONS)
    event = {
        "type": recorded.type,
        "message_id": recorded.message_id,
        "aggregate_id": recorded.aggregate_id,
        "version": recorded.version,
        "data": recorded.data,
    }
    return Intervention(order_id=order_id, action=action, event=event, saga=saga.summary())
