"""The saga's own events (stream ``saga-<order_id>``): the audit trail of its transitions,
timeouts, ignored answers and operators' interventions.

Pure Python (no Django): the catalogue entries of the sagas context. Each class's
``event_type`` is the name stored, never changed; its fields are exactly the stored
``event_data`` (``eventstore.catalogue``). The saga's state is its row, not a replay of these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from eventstore.catalogue import Event, register


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class SagaStarted(Event):
    event_type: ClassVar[str] = "SagaStarted"
    order_id: str
    state: str
    step: str | None
    deadline: str


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class SagaTransitioned(Event):
    event_type: ClassVar[str] = "SagaTransitioned"
    order_id: str
    from_state: str
    to_state: str
    from_step: str | None
    step: str | None
    reason: str


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class SagaStepTimedOut(Event):
    """A step's deadline passed: ``outcome`` RESENT (sent again) or TIMEOUT."""

    event_type: ClassVar[str] = "SagaStepTimedOut"
    order_id: str
    step: str | None
    attempt: int
    outcome: str


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class SagaParked(Event):
    """A compensation step kept failing: the saga waits for a person (``outcome`` PARKED)."""

    event_type: ClassVar[str] = "SagaParked"
    order_id: str
    step: str | None
    attempt: int
    outcome: str


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class SagaStepRetried(Event):
    """An operator sent the current step again (``outcome`` RETRIED)."""

    event_type: ClassVar[str] = "SagaStepRetried"
    order_id: str
    step: str | None
    attempt: int
    outcome: str
    admin: str


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class SagaManuallyCompensated(Event):
    event_type: ClassVar[str] = "SagaManuallyCompensated"
    order_id: str
    admin: str
    as_cancellation: bool


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class SagaManuallyFailed(Event):
    event_type: ClassVar[str] = "SagaManuallyFailed"
    order_id: str
    admin: str
    step: str | None


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class SagaAnswerIgnored(Event):
    """An answer that settles no step (stale, repeated, an expiry): ``type`` is its event type."""

    event_type: ClassVar[str] = "SagaAnswerIgnored"
    order_id: str
    type: str
    causation_id: str
    state: str
    step: str | None


SagaEvent = (
    SagaStarted
    | SagaTransitioned
    | SagaStepTimedOut
    | SagaParked
    | SagaStepRetried
    | SagaManuallyCompensated
    | SagaManuallyFailed
    | SagaAnswerIgnored
)
# The events of an operator's interventions, each naming the admin.
INTERVENTION_EVENTS: tuple[type[SagaEvent], ...] = (
    SagaStepRetried,
    SagaManuallyCompensated,
    SagaManuallyFailed,
)
