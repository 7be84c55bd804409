"""Command handlers of the payments context: load the Payment, decide, append, project.

Every function here runs inside a database transaction and never calls the gateway: the
charge and the refunds run after commit (:mod:`payments.charging`, :mod:`payments.refunds`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from config import metrics
from eventstore.sql import insert_rows, prepared
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


def store(
    payment: Payment, events: list[PaymentEvent], *, cause_id: str = "", release_claim: bool = False
) -> Payment:
    """Append ``events`` at the payment's version and update the projection (caller's transaction).

    ``release_claim`` (a charge runner's decision): when the events leave the payment settled,
    the projection's UPDATE also releases the runner's claim, so no statement of its own does.
    """
    if not events:
        return payment
    metrics.count_payment_events(((e.type, e.data) for e in events), charge_running=payment.in_flight)
    first = payment.version == 0
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
    _project(payment, first=first, release_claim=release_claim and not payment.in_flight)
    return payment


def record(
    order_id: str,
    decide: Decision,
    *,
    cause_id: str = "",
    known: Payment | None = None,
) -> Payment:
    """Decide on the fresh state and store the outcome in a short transaction of its own.

    Used outside any transaction (after a gateway call); a concurrent writer makes it reload
    and decide again. ``known`` is the payment as this caller last stored or loaded it: the
    first try decides on it without reloading (the append at its version fails if the stream
    moved meanwhile, and the retry reloads). It is not changed: the result is a new object.
    """
    return record_releasing(order_id, decide, cause_id=cause_id, known=known, release_claim=False)[0]


def record_releasing(
    order_id: str,
    decide: Decision,
    *,
    cause_id: str = "",
    known: Payment | None = None,
    release_claim: bool = True,
) -> tuple[Payment, bool]:
    """:func:`record`, releasing a charge runner's claim with a decision that settles the payment.

    Returns the payment and whether the claim was released (in the projection's UPDATE).
    """
    for n in range(CONFLICT_RETRIES):
        try:
            with transaction.atomic():
                payment = _copy(known) if (n == 0 and known is not None) else load_payment(order_id)
                events = decide(payment)
                store(payment, events, cause_id=cause_id, release_claim=release_claim)
                return payment, bool(events) and release_claim and not payment.in_flight
        except ConcurrencyError:
            continue
    raise ConcurrencyError(stream_id(order_id), -1)


def _copy(payment: Payment) -> Payment:
    """A copy that the caller's changes do not reach (its only mutable field is the refund list)."""
    return replace(payment, pending_refunds=list(payment.pending_refunds))


def request_payment(
    *, order_id: str, amount: Decimal, method: str, token: str, command_id: str, strict: bool
) -> tuple[Payment, bool]:
    """Record a charge request (PENDING). Returns the payment and whether a charge must now run.

    ``strict`` (an operator's request) raises ``PaymentConflict`` when the payment is captured,
    running or voided; a failed or declined one gets a new round. A saga's command starts at
    most one round per order: once one exists the command is answered with its outcome
    (:meth:`Payment.report`), and a running round is left to its runner.
    """
    payment = load_payment(order_id)
    if not strict and (payment.status is not None or payment.voided):
        return report_outcome(payment, command_id=command_id)
    events = payment.request(amount=amount, method=method, token=token, command_id=command_id)
    return store(payment, events, cause_id=command_id), True


def report_outcome(payment: Payment, *, command_id: str) -> tuple[Payment, bool]:
    """Answer ``command_id`` with the payment's outcome; True when a round is still running
    (its runner answers when it ends: run it again in case it was left by a crash)."""
    if payment.in_flight:
        return payment, True
    return store(payment, payment.report(), cause_id=command_id), False


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


def _project(payment: Payment, *, first: bool, release_claim: bool = False) -> None:
    # Raw SQL, one statement: an INSERT with the stream's first event (no row can exist before
    # it: the row is written with every event, and this transaction holds version 1), else an
    # UPDATE of the row. The event appended just before holds the stream's next version, so
    # no other writer of this payment gets here meanwhile.
    now = timezone.now()
    values: list[Any] = [
        payment.payment_id,
        payment.status.value if payment.status else "",
        payment.amount,
        payment.refunded,
        payment.attempts,
        payment.captures,
        len(payment.pending_refunds),
        payment.version,
        now,
    ]
    if not first:
        columns = _UPDATED + _RELEASED if release_claim else _UPDATED
        if release_claim:
            values.append(None)
        quote = connection.ops.quote_name
        sets = ", ".join(f"{quote(name)} = %s" for name in columns)
        params = [prepared(PaymentRecord, name, value) for name, value in zip(columns, values, strict=True)]
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {quote(PaymentRecord._meta.db_table)} SET {sets} WHERE {quote('order_id')} = %s",
                [*params, payment.order_id],
            )
            if cursor.rowcount:
                return
        # No row (removed by hand): write it again.
    insert_rows(PaymentRecord, (*_UPDATED, "created_at", "order_id"), [(*values[:9], now, payment.order_id)])


# The projection's columns (named as the model's fields, which set no db_column).
_UPDATED = (
    "payment_id",
    "status",
    "amount",
    "refunded_amount",
    "attempts",
    "captures",
    "pending_refunds",
    "version",
    "updated_at",
)
_RELEASED = ("claimed_until",)
