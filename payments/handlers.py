"""Command handlers of the payments context: load the Payment, decide, append, project.

Every function here runs inside a database transaction and never calls the gateway: the
charge and the refunds run after commit (:mod:`payments.charging`, :mod:`payments.refunds`).

In a unit of work (a consumer's batch) the payments are loaded once per unit — the batch's
streams with one statement, by :func:`prepare_batch` — kept in the unit's identity map, and
their projection rows written together when the unit ends; the SQL is the recorder's
(:mod:`payments.recorder`).

The card token of a charge round never enters an event: :func:`request_payment` holds it in
``payment_secret`` under the round's opaque reference, and :func:`store` forgets it with the
event that ends the round — both in the transaction of the events.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from decimal import Decimal
from functools import partial

from django.db import transaction
from prometheus_client import Counter

from config import metrics
from eventstore import catalogue
from eventstore.messages import Message
from eventstore.store import ConcurrencyError, append, load_stream, load_streams
from eventstore.unit_of_work import UnitOfWork, current

from .domain import ROUND_ENDING, Payment, new_reference, stream_id
from .events import PaymentAttempted, PaymentEvent, PaymentFailed, PaymentProcessed
from .public import CONTEXT
from .recorder import forget_secret, hold_secret, project, project_all

AGGREGATE_TYPE = "payment"
CONFLICT_RETRIES = 10

Decision = Callable[[Payment], list[PaymentEvent]]


def load_payment(order_id: str) -> Payment:
    """The payment of ``order_id`` rebuilt from its stream (empty when never requested).

    In a unit of work, the unit's one object for this payment (what its earlier decisions left).
    """
    unit = current()
    if unit is not None:
        return unit.identity(_key(order_id), lambda: _replay(order_id))
    return _replay(order_id)


def _replay(order_id: str) -> Payment:
    return Payment.replay(order_id, typed(load_stream(stream_id(order_id))))


def typed(messages: Sequence[Message]) -> list[PaymentEvent]:
    """The events of a payment's stream as catalogue events (``payments.events``)."""
    return [catalogue.from_data(m.type, m.schema_version, m.data) for m in messages]  # type: ignore[misc]


def _key(order_id: str) -> tuple[str, str]:
    return (CONTEXT, order_id)


def prepare_batch(messages: Sequence[Message]) -> None:
    """Load the payments a batch of commands is about, with one statement, into the unit.

    A command whose data has no usable order id is skipped here (its handler rejects it).
    """
    unit = current()
    if unit is None:
        return
    order_ids = sorted({str(m.data["order_id"]) for m in messages if isinstance(m.data.get("order_id"), str)})
    streams = load_streams([stream_id(order_id) for order_id in order_ids])
    for order_id in order_ids:
        events = typed(streams[stream_id(order_id)])
        unit.identity(_key(order_id), partial(Payment.replay, order_id, events))


def store(
    payment: Payment, events: list[PaymentEvent], *, cause_id: str = "", release_claim: bool = False
) -> Payment:
    """Append ``events`` at the payment's version and update the projection (caller's transaction).

    ``release_claim`` (a charge runner's decision): when the events leave the payment settled,
    the projection's UPDATE also releases the runner's claim, so no statement of its own does.
    """
    if not events:
        return payment
    metrics.count_after_commit(_counted(events, charge_running=payment.in_flight))
    first = payment.version == 0
    append(
        context=CONTEXT,
        aggregate_type=AGGREGATE_TYPE,
        aggregate_id=stream_id(payment.order_id),
        expected_version=payment.version,
        events=events,
        correlation_id=payment.order_id,
        causation_id=cause_id,
    )
    for event in events:
        payment.apply(event)
    if any(isinstance(event, ROUND_ENDING) for event in events):
        forget_secret(payment.order_id)
    release = release_claim and not payment.in_flight
    unit = current()
    if unit is None:
        project(payment, first=first, release_claim=release)
        return payment
    changed, released = _projections(unit)
    changed[payment.order_id] = payment  # written with the unit's other payments
    if release:
        released.add(payment.order_id)
    return payment


def _counted(events: Sequence[PaymentEvent], *, charge_running: bool) -> list[Counter]:
    """The counters the events move: every charge call, and the end of a charge round.

    ``charge_running`` is False when a captured payment merely announces its capture again:
    that is not a new outcome.
    """
    counters: list[Counter] = []
    for event in events:
        if isinstance(event, PaymentAttempted):
            counters.append(metrics.PAYMENT_ATTEMPTS.labels(outcome=event.outcome or "unknown"))
        elif isinstance(event, PaymentProcessed) and charge_running:
            counters.append(metrics.PAYMENT_OUTCOMES.labels(outcome="captured"))
        elif isinstance(event, PaymentFailed) and charge_running:
            counters.append(metrics.PAYMENT_OUTCOMES.labels(outcome=event.reason or "UNKNOWN"))
    return counters


def _projections(unit: UnitOfWork) -> tuple[dict[str, Payment], set[str]]:
    """The payments changed in ``unit`` and those whose runner's claim it releases; their
    projection rows are written together at its end."""
    changed: dict[str, Payment] = unit.identity((_projections, "changed"), dict)
    released: set[str] = unit.identity((_projections, "released"), set)
    unit.before_flush(_projections, lambda: project_all(list(changed.values()), released=released))
    return changed, released


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
                payment = snapshot(known) if (n == 0 and known is not None) else load_payment(order_id)
                events = decide(payment)
                store(payment, events, cause_id=cause_id, release_claim=release_claim)
                return payment, bool(events) and release_claim and not payment.in_flight
        except ConcurrencyError:
            continue
    raise ConcurrencyError(stream_id(order_id), -1)


def snapshot(payment: Payment) -> Payment:
    """A copy that the caller's changes do not reach (its only mutable field is the refund list)."""
    return replace(payment, pending_refunds=list(payment.pending_refunds))


def request_payment(
    *,
    order_id: str,
    amount: Decimal,
    method: str,
    token: str,
    customer_id: str,
    command_id: str,
    strict: bool,
) -> tuple[Payment, bool]:
    """Record a charge request (PENDING). Returns the payment and whether a charge must now run.

    ``strict`` (an operator's request) raises ``PaymentConflict`` when the payment is captured,
    running or voided; a failed or declined one gets a new round. A saga's command starts at
    most one round per order: once one exists the command is answered with its outcome
    (:meth:`Payment.report`), and a running round is left to its runner.

    The event names the round's card token by a new opaque reference; the token itself is held
    in ``payment_secret`` until the round ends. ``customer_id`` ("" when not known) is whose
    payment it is: the owner may read it.
    """
    payment = load_payment(order_id)
    if not strict and (payment.status is not None or payment.voided):
        return report_outcome(payment, command_id=command_id)
    reference = new_reference()
    events = payment.request(
        amount=amount, method=method, reference=reference, customer_id=customer_id, command_id=command_id
    )
    store(payment, events, cause_id=command_id)
    hold_secret(order_id, reference=reference, token=token)
    return payment, True


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
