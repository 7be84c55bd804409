"""The Payment aggregate: one per order, rebuilt from the events of stream ``payment-<order_id>``.

Pure Python (no Django). Decisions return the events they produce; :meth:`Payment.apply`
is the only place that changes state. The gateway is called by the application layer
between decisions, never from here.
"""

from __future__ import annotations

import functools
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from .events import (
    PaymentAttempted,
    PaymentEvent,
    PaymentFailed,
    PaymentOutcomeUnknown,
    PaymentProcessed,
    PaymentRefunded,
    PaymentRequested,
    RefundRequested,
)

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
_PAYMENT_NAMESPACE = uuid.UUID("7b1f3c5e-2f4a-4d7e-9a51-0c8e6f2d9b10")


class PaymentStatus(StrEnum):
    """The statuses of docs/api.md "Endpoints"."""

    PENDING = "PENDING"
    UNKNOWN = "UNKNOWN"
    CAPTURED = "CAPTURED"
    DECLINED = "DECLINED"
    FAILED = "FAILED"
    REFUNDED = "REFUNDED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"


class FailureReason(StrEnum):
    """Why a payment failed, as the saga and the order report it."""

    DECLINED = "PAYMENT_DECLINED"
    UNAVAILABLE = "PAYMENT_UNAVAILABLE"


class AttemptOutcome(StrEnum):
    """What one charge call to the gateway answered."""

    CAPTURED = "captured"
    DECLINED = "declined"
    TRANSIENT = "transient"
    TIMEOUT = "timeout"


IN_FLIGHT = frozenset({PaymentStatus.PENDING, PaymentStatus.UNKNOWN})
CAPTURED_STATES = frozenset(
    {PaymentStatus.CAPTURED, PaymentStatus.REFUNDED, PaymentStatus.PARTIALLY_REFUNDED}
)
# The events that end a charge round: no call with the round's card token follows one of them
# (a captured payment is never charged again; a failed one only in a new round, with a new token).
ROUND_ENDING: tuple[type[PaymentEvent], ...] = (PaymentProcessed, PaymentFailed)


class PaymentConflict(Exception):
    """The payment's state forbids the request (already captured, still running, over-refund)."""


@dataclass(frozen=True, slots=True)
class RefundRequest:
    """A refund asked for and not yet answered; ``amount`` None means everything left."""

    refund_id: str
    amount: Decimal | None
    reason: str
    command_id: str


def money(value: Decimal) -> str:
    """Money as written in messages: a string with two decimals."""
    return str(value.quantize(CENT))


@functools.lru_cache(maxsize=4096)
def payment_id_for(order_id: str) -> str:
    """The payment's id: stable per order, so every round and every refund names the same payment.

    Kept for the orders in flight: a charge asks for it several times (its events, its rows).
    """
    return str(uuid.uuid5(_PAYMENT_NAMESPACE, f"payment-{order_id}"))


def stream_id(order_id: str) -> str:
    """The event stream of an order's payment (stream ids are unique across aggregate types)."""
    return f"payment-{order_id}"


def idempotency_key_for(order_id: str) -> str:
    """The gateway's idempotency key: one per order, so a charge can never capture twice."""
    return f"order-{order_id}"


def new_reference() -> str:
    """An opaque name for the card token of one charge round.

    Random, so nothing about the token can be learnt from it: the event log keeps the reference,
    the token itself is held apart (``payment_secret``) and deleted once the round is over.
    """
    return f"pmref_{secrets.token_hex(12)}"


@dataclass
class Payment:
    """The state of one order's payment."""

    order_id: str
    status: PaymentStatus | None = None
    amount: Decimal = ZERO
    method: str = ""
    # The opaque reference of the current round's card token (the token is never in an event).
    reference: str = ""
    # The customer the saga's ProcessPayment named (whose GET of the payment is allowed).
    customer_id: str = ""
    attempts: int = 0
    captures: int = 0
    refunded: Decimal = ZERO
    voided: bool = False
    request_command_id: str = ""
    pending_refunds: list[RefundRequest] = field(default_factory=list)
    # A charge call that timed out may still take effect at the gateway until then.
    may_land_until: datetime | None = None
    version: int = 0

    @classmethod
    def replay(cls, order_id: str, events: Iterable[PaymentEvent]) -> Payment:
        """The payment as its events left it."""
        payment = cls(order_id=order_id)
        for event in events:
            payment.apply(event)
        return payment

    # --- facts -----------------------------------------------------------------------------

    @property
    def payment_id(self) -> str:
        return payment_id_for(self.order_id)

    @property
    def idempotency_key(self) -> str:
        return idempotency_key_for(self.order_id)

    @property
    def refundable(self) -> Decimal:
        """What was captured and not yet refunded."""
        return (self.amount - self.refunded) if self.captures else ZERO

    @property
    def in_flight(self) -> bool:
        return self.status in IN_FLIGHT

    def calls_may_land(self, now: datetime) -> bool:
        """Whether a charge call that timed out may still take effect at the gateway."""
        return self.may_land_until is not None and now < self.may_land_until

    # --- decisions -------------------------------------------------------------------------

    def request(
        self, *, amount: Decimal, method: str, reference: str, customer_id: str, command_id: str
    ) -> list[PaymentEvent]:
        """Start a charge round; a failed or declined payment may be tried again.

        ``reference`` names the round's card token, which the caller holds apart from the
        events (the log is append-only: a token written there could never be erased).
        """
        if self.captures:
            raise PaymentConflict("the payment of this order is already captured")
        if self.in_flight:
            raise PaymentConflict("a payment of this order is already being processed")
        if self.voided:
            raise PaymentConflict("this order's payment was cancelled by a refund")
        if amount <= ZERO:
            raise ValueError("a payment amount must be positive")
        requested = PaymentRequested(
            order_id=self.order_id,
            payment_id=self.payment_id,
            amount=money(amount),
            method=method,
            reference=reference,
            customer_id=customer_id,
            idempotency_key=self.idempotency_key,
            command_id=command_id,
        )
        return [requested]

    def record_attempt(
        self, *, outcome: AttemptOutcome, error: str = "", may_land_until: datetime | None = None
    ) -> list[PaymentEvent]:
        """One charge call was made (whatever it answered).

        ``may_land_until``: for a call that timed out, until when it may still take effect.
        """
        if not self.in_flight:
            return []
        attempted = PaymentAttempted(
            order_id=self.order_id,
            payment_id=self.payment_id,
            attempt=self.attempts + 1,
            outcome=outcome.value,
            error=error,
            may_land_until=None if may_land_until is None else may_land_until.isoformat(),
        )
        return [attempted]

    def mark_unknown(self, *, error: str) -> list[PaymentEvent]:
        """A call timed out: the charge may or may not have happened until the ledger says."""
        if self.status != PaymentStatus.PENDING:
            return []
        return [PaymentOutcomeUnknown(order_id=self.order_id, payment_id=self.payment_id, error=error)]

    def capture(self) -> list[PaymentEvent]:
        """The gateway captured the amount."""
        if not self.in_flight:
            return []
        return [self._processed()]

    def _processed(self) -> PaymentEvent:
        return PaymentProcessed(
            order_id=self.order_id,
            payment_id=self.payment_id,
            amount=money(self.amount),
            attempts=self.attempts,
        )

    def fail(
        self, *, reason: FailureReason, error: str, now: datetime | None = None, calls_ended: bool = False
    ) -> list[PaymentEvent]:
        """The charge round ended without a capture.

        An UNKNOWN payment fails only once no call it made can still capture: every call ended
        (``calls_ended``, a definitive answer or the caller saw its calls end), or ``now`` is past
        ``may_land_until``. Otherwise nothing is decided and the payment stays UNKNOWN.
        """
        if not self.in_flight:
            return []
        unsettled = now is None or self.calls_may_land(now)
        if self.status == PaymentStatus.UNKNOWN and not calls_ended and unsettled:
            return []
        return [self._failure(reason.value, error)]

    def report(self) -> list[PaymentEvent]:
        """Answer a saga that asks for the outcome again (never starts a charge).

        Captured: PaymentProcessed again. Failed or declined: PaymentFailed again. Still running:
        nothing now (the round answers when it ends). Never requested (the request was lost or
        is late) or cancelled before it was charged: closed as failed, so a late request can
        never charge it.
        """
        if self.captures:
            return [self._processed()]
        if self.in_flight:
            return []
        if self.status == PaymentStatus.DECLINED:
            return [self._failure(FailureReason.DECLINED.value, "repeated: the payment was declined")]
        if self.status == PaymentStatus.FAILED:
            return [self._failure(FailureReason.UNAVAILABLE.value, "repeated: the payment failed")]
        return [self._failure(FailureReason.UNAVAILABLE.value, "no charge was made: the payment is closed")]

    def reconcile_capture(self) -> list[PaymentEvent]:
        """The gateway's ledger shows a capture this payment never heard of (a call that landed
        after the round ended): the capture is a fact, which the saga refunds if the order failed."""
        if self.captures or self.in_flight:
            return []
        return [self._processed()]

    def _failure(self, reason: str, error: str) -> PaymentEvent:
        return PaymentFailed(
            order_id=self.order_id,
            payment_id=self.payment_id,
            reason=reason,
            error=error,
            attempts=self.attempts,
        )

    def request_refund(
        self, *, refund_id: str, amount: Decimal | None, reason: str, command_id: str, strict: bool
    ) -> list[PaymentEvent]:
        """Ask for a refund; answered at once with 0.00 when nothing was or can be captured.

        ``strict`` (an operator's request) refuses what cannot be honoured: a refund while the
        outcome is unresolved, nothing left, or more than is left. A saga's compensation is
        never refused: it is answered with what could be refunded.
        """
        if amount is not None and amount <= ZERO:
            raise ValueError("a refund amount must be positive")
        if strict:
            self._check_strict_refund(amount)
        requested = RefundRequested(
            order_id=self.order_id,
            payment_id=self.payment_id,
            refund_id=refund_id,
            amount=None if amount is None else money(amount),
            reason=reason,
            command_id=command_id,
        )
        events: list[PaymentEvent] = [requested]
        if not self.in_flight and not self.captures and not self.pending_refunds:
            events.append(self._refunded(ZERO, refunded_after=self.refunded))
        return events

    def next_refund(self) -> tuple[RefundRequest, Decimal] | None:
        """The oldest unanswered refund and the amount to refund for it now, once settled."""
        if self.in_flight or not self.pending_refunds:
            return None
        request = self.pending_refunds[0]
        wanted = self.refundable if request.amount is None else request.amount
        return request, min(wanted, self.refundable)

    def complete_refund(self, *, refund_id: str, amount: Decimal) -> list[PaymentEvent]:
        """The gateway refunded ``amount`` for the oldest pending request."""
        if not self.pending_refunds or self.pending_refunds[0].refund_id != refund_id:
            return []
        return [self._refunded(amount, refunded_after=self.refunded + amount)]

    def _check_strict_refund(self, amount: Decimal | None) -> None:
        if self.in_flight:
            raise PaymentConflict("the payment's outcome is not settled yet")
        if self.pending_refunds:
            raise PaymentConflict("another refund of this payment is still running")
        if self.refundable <= ZERO:
            raise PaymentConflict("nothing captured is left to refund")
        if amount is not None and amount > self.refundable:
            raise PaymentConflict(f"only {money(self.refundable)} can be refunded")

    def _refunded(self, amount: Decimal, *, refunded_after: Decimal) -> PaymentEvent:
        return PaymentRefunded(
            order_id=self.order_id,
            payment_id=self.payment_id,
            amount=money(amount),
            refunded_amount=money(refunded_after),
        )

    # --- state changes ---------------------------------------------------------------------

    def apply(self, event: PaymentEvent) -> None:
        """Change state by one event."""
        match event:
            case PaymentRequested():
                self.status = PaymentStatus.PENDING
                self.amount = Decimal(event.amount)
                self.method = event.method
                # Events written before tokens were held apart carry a "token" member instead of a
                # reference: it is ignored (the log cannot be rewritten); such rounds have reference "".
                self.reference = event.reference
                if event.customer_id:
                    self.customer_id = event.customer_id
                self.request_command_id = event.command_id
            case PaymentAttempted():
                self.attempts += 1
                if event.may_land_until:
                    moment = datetime.fromisoformat(event.may_land_until)
                    if self.may_land_until is None or moment > self.may_land_until:
                        self.may_land_until = moment
            case PaymentOutcomeUnknown():
                self.status = PaymentStatus.UNKNOWN
            case PaymentProcessed():
                if not self.captures:
                    self.status = PaymentStatus.CAPTURED
                self.captures = 1
            case PaymentFailed():
                declined = event.reason == FailureReason.DECLINED
                self.status = PaymentStatus.DECLINED if declined else PaymentStatus.FAILED
            case RefundRequested():
                self._on_refund_requested(event)
            case PaymentRefunded():
                if self.pending_refunds:
                    self.pending_refunds.pop(0)
                self.refunded = Decimal(event.refunded_amount)
                if self.captures and self.refunded > ZERO:
                    fully = self.refunded >= self.amount
                    self.status = PaymentStatus.REFUNDED if fully else PaymentStatus.PARTIALLY_REFUNDED
        self.version += 1

    def _on_refund_requested(self, event: RefundRequested) -> None:
        request = RefundRequest(
            refund_id=event.refund_id,
            amount=None if event.amount is None else Decimal(event.amount),
            reason=event.reason,
            command_id=event.command_id,
        )
        self.pending_refunds.append(request)
        if event.amount is None:
            # A full refund is a compensation: no later charge round may capture again.
            self.voided = True
