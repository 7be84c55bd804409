"""Running refunds: outside any transaction, one pending request at a time, oldest first.

A refund waits while the charge's outcome is unresolved (PENDING/UNKNOWN): the charge runner
calls :func:`run_refunds` once it has settled, so a capture that lands after a compensation
asked for its money back is refunded too. Each request has its own refund key at the
gateway, so running it again after a crash never pays twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal

from django.conf import settings

from .domain import Payment, RefundRequest
from .events import PaymentEvent
from .gateway import (
    GatewayError,
    PaymentGateway,
    call_with_timeout,
    default_gateway,
    ensure_outside_transaction,
)
from .handlers import load_payment, record

logger = logging.getLogger(__name__)

MAX_REFUNDS_PER_RUN = 20


def run_refunds(
    *,
    order_id: str,
    gateway: PaymentGateway | None = None,
    timeout: float | None = None,
    payment: Payment | None = None,
) -> Payment:
    """Answer every pending refund request of a settled payment; returns the resulting payment.

    ``payment``: the state the caller just stored, used instead of a first load (a stale one
    only costs a repeated, keyed gateway refund and a reload when its answer is recorded).
    """
    ensure_outside_transaction()
    gateway = gateway or default_gateway()
    timeout = float(settings.PAYMENT_TIMEOUT) if timeout is None else timeout
    for _ in range(MAX_REFUNDS_PER_RUN):
        if payment is None:
            payment = load_payment(order_id)
        step = payment.next_refund()
        if step is None:
            return payment
        request, amount = step
        if amount > 0 and not _refund_at_gateway(gateway, payment, request, amount, timeout=timeout):
            return payment
        payment = record(
            order_id, _completion(request.refund_id, amount), cause_id=request.command_id, known=payment
        )
    return load_payment(order_id)


def _refund_at_gateway(
    gateway: PaymentGateway, payment: Payment, request: RefundRequest, amount: Decimal, *, timeout: float
) -> bool:
    """Refund at the gateway under the request's own key; False when it must be tried again later."""
    try:
        call_with_timeout(
            lambda: gateway.refund(
                idempotency_key=payment.idempotency_key,
                refund_key=f"refund-{request.refund_id}",
                amount=amount,
            ),
            timeout=timeout,
        )
    except GatewayError:
        logger.warning("refund not done, left for the resume task", extra={"order_id": payment.order_id})
        return False
    return True


def _completion(refund_id: str, amount: Decimal) -> Callable[[Payment], list[PaymentEvent]]:
    return lambda payment: payment.complete_refund(refund_id=refund_id, amount=amount)
