"""Command handlers of the payments context: load the Payment, decide, append, project.

Every function here runs inside a database transaction and never calls the gateway: the
charge and the refunds run after commit (:mod:`payments.charging`, :mod:`payments.refunds`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from config import metrics
from eventstore.store import ConcurrencyError, NewEvent, append, load_stream

from .domain import Payment, PaymentEvent, stream_id
from .models import PaymentRecord
from .public import CONTEXT

AGGREGATE_TYPE = "payment"
CONFLICT_RETRIES = 10

Decision = Callable[[Payment], list[PaymentEvent]]


def load_payment(order_id: str) -> Payment:
    """The payment of ``order_id`` rebuilt from its stream (empty when never requested)."""
    events = load_stream(stream_id(order_id))
    return Payment.replay(order_id, ((event.type, event.data) for event in events))


def store(payment: Payment, events: list[PaymentEvent], *, cause_id: str = "") -> Payment:
    """Append ``events`` at the payment's version and update the projection (caller's transaction)."""
    if not events:
        return payment
    metrics.count_payment_events(((e.type, e.data) for e in events), charge_running=payment.in_flight)
    append(
        context=CONTEXT,
        aggregate_type=AGGREGATE_TYPE,
        aggregate_id=stream_id(payment.order_id),
        expected_version=payment.version,
        events=[NewEvent(event.type, event.data) for event in events],
        correlation_id=payment.order_id,
        causation_id=cause_id,
    )
    for event in events:
        payment.apply(event)
    _project(payment)
    return payment


def record(order_id: str, decide: Decision, *, cause_id: str = "") -> Payment:
    """Decide on the fresh state and store the outcome in a short transaction of its own.

    Used outside any transaction (after a gateway call); a concurrent writer makes it reload
    and decide again.
    """
    for _ in range(CONFLICT_RETRIES):
        try:
            with transaction.atomic():
                payment = load_payment(order_id)
                return store(payment, decide(payment), cause_id=cause_id)
        except ConcurrencyError:
            continue
    raise ConcurrencyError(stream_id(order_id), -1)


def request_payment(
    *, order_id: str, amount: Decimal, method: str, token: str, command_id: str, strict: bool
) -> tuple[Payment, bool]:
    """Record a charge request (PENDING). Returns the payment and whether a charge must now run.

    ``strict`` (an operator's request) raises ``PaymentConflict`` when the payment is captured,
    running or voided. A saga's command is answered instead: a captured payment announces its
    capture again, a running one is left to its runner, a voided one (refunded before it was
    charged) is never charged.
    """
    payment = load_payment(order_id)
    if not strict:
        if payment.announce_capture():
            store(payment, payment.announce_capture(), cause_id=command_id)
            return payment, False
        if payment.in_flight:
            return payment, True
        if payment.voided or payment.captures:
            return payment, False
    events = payment.request(amount=amount, method=method, token=token, command_id=command_id)
    return store(payment, events, cause_id=command_id), True


def request_refund(
    *, order_id: str, amount: Decimal | None, reason: str, command_id: str, strict: bool
) -> tuple[Payment, bool]:
    """Record a refund request. Returns the payment and whether a refund must now run."""
    payment = load_payment(order_id)
    events = payment.request_refund(
        refund_id=str(uuid.uuid4()), amount=amount, reason=reason, command_id=command_id, strict=strict
    )
    store(payment, events, cause_id=command_id)
    return payment, bool(payment.pending_refunds)


def _project(payment: Payment) -> None:
    # One UPDATE (the row exists from the first event on); update_or_create would take a
    # savepoint and a SELECT ... FOR UPDATE around it. The event appended just before holds
    # the stream's next version, so no other writer of this payment gets here meanwhile.
    values = {
        "payment_id": payment.payment_id,
        "status": payment.status.value if payment.status else "",
        "amount": payment.amount,
        "refunded_amount": payment.refunded,
        "attempts": payment.attempts,
        "captures": payment.captures,
        "pending_refunds": len(payment.pending_refunds),
        "version": payment.version,
    }
    row = PaymentRecord.objects.filter(order_id=payment.order_id)
    if not row.update(**values, updated_at=timezone.now()):
        PaymentRecord.objects.create(order_id=payment.order_id, **values)
