"""The payment's events (stream ``payment-<order_id>``): the catalogue entries of payments.

Pure Python (no Django). Each class's ``event_type`` is the name stored and published, never
changed; its fields are exactly the stored ``event_data`` (``eventstore.catalogue``): money as
two-decimal strings, times as ISO-8601 strings. No event carries a card token: a charge round
names its token by an opaque ``reference``. Other contexts read these names through
``payments.public``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from eventstore.catalogue import Event, register


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentRequested(Event):
    """A charge round starts (events written before tokens were held apart carry ``token``
    instead of ``reference``, and no ``customer_id``/``command_id``: read as empty)."""

    event_type: ClassVar[str] = "PaymentRequested"
    order_id: str
    payment_id: str
    amount: str
    method: str
    reference: str = ""
    customer_id: str = ""
    idempotency_key: str
    command_id: str = ""


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentAttempted(Event):
    """One charge call was made; ``may_land_until`` only for a call that timed out."""

    event_type: ClassVar[str] = "PaymentAttempted"
    omitted_when_none: ClassVar[frozenset[str]] = frozenset({"may_land_until"})
    order_id: str
    payment_id: str
    attempt: int
    outcome: str
    error: str
    may_land_until: str | None = None


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentOutcomeUnknown(Event):
    event_type: ClassVar[str] = "PaymentOutcomeUnknown"
    order_id: str
    payment_id: str
    error: str


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentProcessed(Event):
    event_type: ClassVar[str] = "PaymentProcessed"
    order_id: str
    payment_id: str
    amount: str
    attempts: int


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentFailed(Event):
    event_type: ClassVar[str] = "PaymentFailed"
    order_id: str
    payment_id: str
    reason: str
    error: str
    attempts: int


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class RefundRequested(Event):
    """A refund asked for; ``amount`` None means everything left (a compensation)."""

    event_type: ClassVar[str] = "RefundRequested"
    order_id: str
    payment_id: str
    refund_id: str
    amount: str | None
    reason: str
    command_id: str


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentRefunded(Event):
    event_type: ClassVar[str] = "PaymentRefunded"
    order_id: str
    payment_id: str
    amount: str
    refunded_amount: str


PaymentEvent = (
    PaymentRequested
    | PaymentAttempted
    | PaymentOutcomeUnknown
    | PaymentProcessed
    | PaymentFailed
    | RefundRequested
    | PaymentRefunded
)
