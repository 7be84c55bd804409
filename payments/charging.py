"""Running a charge: outside any transaction, with timeout, retries, the breaker and reconciliation.

:func:`run_charge` is what runs after the ProcessPayment command's transaction commits, what
the operator's API calls, and what the periodic task calls for payments left PENDING or
UNKNOWN by a crash. It is safe to run twice: the gateway's ledger is keyed by the order, so
a repeated charge returns the existing capture, and a claim on the projection row keeps two
runners from working on one payment at the same time.

A call that timed out may still capture later. The payment is then UNKNOWN, and it turns
FAILED only once no such call can land: the runner waits for its own abandoned calls to end
(at most ``PAYMENT_CALL_LIMIT`` after each was made) and asks the ledger; a resumed UNKNOWN
payment makes no new call and fails only past that limit. What still slips through (a call
that outlives its limit) is found by :func:`payments.reconciliation.reconcile_with_gateway`.

The card token is read from ``payment_secret`` by the claim (and checked against the round's
reference) when a round starts calling, a resumed one included; it is deleted with the event
that ends the round. A
round that finds none (deleted by hand, or a crash and a sweep in between) makes no call: the
ledger decides as for a round that gave up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from .breaker import CircuitBreaker, CircuitOpenError, default_breaker
from .domain import AttemptOutcome, FailureReason, Payment, PaymentStatus, idempotency_key_for
from .events import PaymentEvent
from .gateway import (
    ChargeResult,
    GatewayError,
    GatewayTimeout,
    LedgerStatus,
    PaymentGateway,
    TransientGatewayError,
    call_with_timeout,
    default_gateway,
    ensure_outside_transaction,
)
from .group_record import group_recorder
from .handlers import load_payment
from .models import PaymentRecord
from .recorder import claim_charge, release_charge, secret_of, sweep_secrets
from .refunds import run_refunds

logger = logging.getLogger(__name__)

_LEDGER_UNREACHABLE = object()


def run_charge(
    *,
    order_id: str,
    gateway: PaymentGateway | None = None,
    breaker: CircuitBreaker | None = None,
    timeout: float | None = None,
    payment: Payment | None = None,
) -> Payment:
    """Charge a PENDING payment, or reconcile an UNKNOWN one, then run any refund waiting for it.

    ``payment`` is the state a committed transaction just stored (the ProcessPayment handler's):
    when the claim finds the stream still at its version, it is used instead of reloading.
    """
    ensure_outside_transaction()
    gateway = gateway or default_gateway()
    runner = _ChargeRunner(
        gateway=gateway,
        breaker=breaker or default_breaker(gateway.name),
        timeout=float(settings.PAYMENT_TIMEOUT) if timeout is None else timeout,
    )
    now = timezone.now()
    claimed = claim_charge(order_id, until=now + runner.lease, now=now)
    if claimed is None:
        return load_payment(order_id)
    version, held = claimed
    released = False
    try:
        if payment is None or payment.order_id != order_id or payment.version != version:
            payment = load_payment(order_id)
        if payment.in_flight:
            payment = runner.run(payment, held=held)
            released = runner.released
    finally:
        if not released:
            release_charge(order_id)
    if payment.next_refund() is None:
        # Nothing to refund now. A refund asked for after the runner's last write runs on its
        # own (its handler, or the resume task): the payment was settled when it was asked.
        return payment
    return run_refunds(order_id=order_id, gateway=gateway, timeout=runner.timeout, payment=payment)


class _ChargeRunner:
    """One charge round of one payment (attempts, retries, reconciliation, the final decision)."""

    def __init__(self, *, gateway: PaymentGateway, breaker: CircuitBreaker, timeout: float) -> None:
        self.gateway = gateway
        self.breaker = breaker
        self.timeout = timeout
        self.attempts = int(getattr(settings, "PAYMENT_RETRY_ATTEMPTS", 3))
        self.backoff = float(getattr(settings, "PAYMENT_RETRY_BACKOFF", 0.2))

    @property
    def lease(self) -> timedelta:
        per_attempt = 2 * self.timeout + self.backoff * 2**self.attempts
        # ... and the wait for abandoned calls before giving up.
        return timedelta(seconds=self.attempts * per_attempt + call_limit(self.timeout) + 30)

    def run(self, payment: Payment, *, held: tuple[str, str] | None = None) -> Payment:
        """Run the round; returns the payment as the runner's last write (or read) left it.

        ``held``: the ``(reference, token)`` the claim read; another round's is not used.
        """
        self.order_id = payment.order_id
        self.payment = payment
        self.released = False
        self.cause_id = payment.request_command_id
        # The calls of this runner that timed out: each may still capture until it has ended.
        self.in_doubt: list[threading.Event] = []
        self.uncertain = payment.status == PaymentStatus.UNKNOWN
        if self.uncertain:
            # Resumed after an earlier runner's call timed out: no new call, the ledger decides.
            self._give_up("the outcome of a timed-out charge call was never heard", own_calls=False)
            return self.payment
        if held is not None and held[0] == payment.reference:
            token: str | None = held[1]
        else:
            token = secret_of(payment.order_id, reference=payment.reference)
        if token is None:
            self._give_up("no card token is held for this payment", own_calls=False)
            return self.payment
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.backoff, max=self.backoff * 2**self.attempts),
            retry=retry_if_exception_type((TransientGatewayError, GatewayTimeout)),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    self._attempt(payment, token)
                    return self.payment
        except (CircuitOpenError, GatewayError) as exc:
            self._give_up(str(exc))
        return self.payment

    def _attempt(self, payment: Payment, token: str) -> None:
        def charge() -> ChargeResult:
            return self.gateway.charge(
                idempotency_key=payment.idempotency_key, amount=payment.amount, token=token
            )

        started = timezone.now()
        try:
            result = self.breaker.call(lambda: call_with_timeout(charge, timeout=self.timeout))
        except GatewayTimeout as exc:
            error = str(exc)
            if exc.call_done is not None:
                self.in_doubt.append(exc.call_done)
            may_land_until = started + timedelta(seconds=call_limit(self.timeout))
            self._record(
                _in_turn(
                    lambda p: p.record_attempt(
                        outcome=AttemptOutcome.TIMEOUT, error=error, may_land_until=may_land_until
                    ),
                    lambda p: p.mark_unknown(error=error),
                )
            )
            self.uncertain = True
            if self._reconciled():
                return
            raise
        except TransientGatewayError as exc:
            error = str(exc)
            self._record(lambda p: p.record_attempt(outcome=AttemptOutcome.TRANSIENT, error=error))
            raise
        # The attempt and its outcome in one transaction (one round of load, append, project).
        # The gateway's answer for the key is definitive: it holds for every call made with it.
        if result.captured:
            self._record(
                _in_turn(lambda p: p.record_attempt(outcome=AttemptOutcome.CAPTURED), lambda p: p.capture())
            )
        else:
            self._record(
                _in_turn(
                    lambda p: p.record_attempt(outcome=AttemptOutcome.DECLINED, error=result.detail),
                    lambda p: p.fail(reason=FailureReason.DECLINED, error=result.detail, calls_ended=True),
                )
            )

    def _reconciled(self) -> bool:
        """Ask the ledger after a timeout; True when that settled the payment as captured."""
        ledger = self._ask_ledger()
        if ledger is _LEDGER_UNREACHABLE:
            return False
        self.uncertain = False
        if isinstance(ledger, LedgerStatus) and ledger.captured:
            self._record(lambda p: p.capture())
            return True
        return False

    def _give_up(self, error: str, *, own_calls: bool = True) -> None:
        """No capture heard of after every attempt: failed, once the ledger agrees and no call can land.

        The ledger is always asked first: a runner that crashed after the gateway captured left
        the payment PENDING with nothing recorded (and a breaker open now says nothing about
        it). This runner's abandoned calls are waited for (each at most until its call limit).
        Captured: recorded as such. Not captured: failed when every call is known to have ended,
        or past the calls' limit. Otherwise — the ledger cannot be asked, or a call of ours is
        still running — nothing is decided and the resume task looks again.
        """
        ended = self._wait_for_calls(self.payment.may_land_until) if self.in_doubt else True
        ledger = self._ask_ledger()
        if ledger is _LEDGER_UNREACHABLE:
            return
        if isinstance(ledger, LedgerStatus) and ledger.captured:
            self._record(lambda p: p.capture())
            return
        if not ended:
            # A call of ours is still running past its limit: it may still capture. Leave the
            # payment UNKNOWN; the resume task decides later, the reconciliation after that.
            return
        calls_ended = own_calls and bool(self.in_doubt)
        now = timezone.now()
        self._record(
            lambda p: p.fail(reason=FailureReason.UNAVAILABLE, error=error, now=now, calls_ended=calls_ended)
        )

    def _wait_for_calls(self, until: datetime | None) -> bool:
        """Wait until this runner's abandoned calls ended, or ``until``; True if all of them ended."""
        for done in self.in_doubt:
            left = 0.0 if until is None else (until - timezone.now()).total_seconds()
            if not done.wait(max(left, 0.0)):
                return False
        return True

    def _ask_ledger(self) -> object:
        try:
            return call_with_timeout(
                lambda: self.gateway.status(idempotency_key=idempotency_key_for(self.order_id)),
                timeout=self.timeout,
            )
        except GatewayError:
            return _LEDGER_UNREACHABLE

    def _record(self, decide: Callable[[Payment], list[PaymentEvent]]) -> Payment:
        """Store a decision, deciding first on the state this runner knows (reloaded on a conflict).

        A decision that settles the payment releases the claim in the same transaction. In a
        consumer process the decisions of its runners are stored together
        (:mod:`payments.group_record`).
        """
        self.payment, released = group_recorder.record(
            self.order_id, decide, cause_id=self.cause_id, known=self.payment
        )
        self.released = self.released or released
        return self.payment


def call_limit(timeout: float | None = None) -> float:
    """How long after it was made a charge call may still take effect (PAYMENT_CALL_LIMIT)."""
    limit = float(getattr(settings, "PAYMENT_CALL_LIMIT", 0.0) or 0.0)
    if limit > 0:
        return limit
    timeout = float(settings.PAYMENT_TIMEOUT) if timeout is None else timeout
    return 2 * timeout + 1.0


def _in_turn(*decisions: Callable[[Payment], list[PaymentEvent]]) -> Callable[[Payment], list[PaymentEvent]]:
    """One decision made of several, each taken on the state the previous one's events leave."""

    def decide(payment: Payment) -> list[PaymentEvent]:
        # store() applies the events to the real one; the refund list is its only mutable field
        scratch = replace(payment, pending_refunds=list(payment.pending_refunds))
        events: list[PaymentEvent] = []
        for decision in decisions:
            decided = decision(scratch)
            for event in decided:
                scratch.apply(event)
            events += decided
        return events

    return decide


def resume_stalled_payments(*, older_than: float | None = None) -> list[str]:
    """Re-run payments left PENDING/UNKNOWN (a crash, an unreachable ledger) and refunds left waiting;
    then delete the card tokens of payments no longer running that a crash left behind."""
    ensure_outside_transaction()
    age = float(getattr(settings, "PAYMENT_RESUME_AFTER", 5.0)) if older_than is None else older_than
    now = timezone.now()
    stalled = (
        PaymentRecord.objects.filter(
            Q(status__in=[PaymentStatus.PENDING, PaymentStatus.UNKNOWN]) | Q(pending_refunds__gt=0)
        )
        .filter(updated_at__lte=now - timedelta(seconds=age))
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .values_list("order_id", flat=True)[:100]
    )
    resumed = []
    for order_id in stalled:
        try:
            run_charge(order_id=order_id)
            resumed.append(order_id)
        except Exception:
            logger.exception("resuming a payment failed", extra={"order_id": order_id})
    swept = sweep_secrets()
    if swept:
        logger.info("card tokens of settled payments deleted", extra={"count": swept})
    return resumed
