"""Continuous reconciliation with the gateway's ledger: what the gateway holds is the truth.

A periodic task (:func:`reconcile_with_gateway`) compares every payment touched within
``PAYMENT_RECONCILE_WINDOW`` seconds, in every state, with the ledger's entry for its
idempotency key, and turns a disagreement it can settle into events:

- **a late capture** — the ledger captured, the payment says FAILED, DECLINED or never charged
  (a call that took effect after its round ended): recorded as ``PaymentProcessed``, which the
  saga refunds when the order did not complete;

and logs and counts the others for a person (they need no event, or must not get one):

- ``captured_unknown_to_ledger`` — the payment says captured, the ledger has no capture;
- ``refund_mismatch`` — the refunded amounts differ with no refund running.

Payments still running (PENDING, UNKNOWN) are left to their runner and the resume task.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from config import metrics

from .domain import Payment, PaymentStatus, idempotency_key_for
from .gateway import (
    GatewayError,
    LedgerStatus,
    PaymentGateway,
    default_gateway,
    ensure_outside_transaction,
)
from .handlers import load_payment, record
from .models import PaymentRecord

logger = logging.getLogger(__name__)

BATCH = 500
LATE_CAPTURE = "late_capture"
CAPTURED_UNKNOWN_TO_LEDGER = "captured_unknown_to_ledger"
REFUND_MISMATCH = "refund_mismatch"


def reconcile_with_gateway(
    *, window: float | None = None, gateway: PaymentGateway | None = None
) -> dict[str, int]:
    """Compare recent payments with the ledger and correct what can be; returns counts by kind."""
    ensure_outside_transaction()
    gateway = gateway or default_gateway()
    seconds = float(settings.PAYMENT_RECONCILE_WINDOW) if window is None else window
    since = timezone.now() - timedelta(seconds=seconds)
    found: Counter[str] = Counter()
    rows = (
        PaymentRecord.objects.filter(updated_at__gte=since)
        .exclude(status__in=[PaymentStatus.PENDING, PaymentStatus.UNKNOWN])
        .order_by("order_id")
        .values_list("order_id", "status", "captures", "refunded_amount", "pending_refunds")
    )
    batch: list[tuple[str, str, int, object, int]] = []
    for row in rows.iterator(chunk_size=BATCH):
        batch.append(row)
        if len(batch) == BATCH:
            _reconcile_batch(batch, gateway, found)
            batch = []
    if batch:
        _reconcile_batch(batch, gateway, found)
    return dict(found)


def _reconcile_batch(
    rows: list[tuple[str, str, int, object, int]], gateway: PaymentGateway, found: Counter[str]
) -> None:
    keys = [idempotency_key_for(str(order_id)) for order_id, *_ in rows]
    try:
        ledger = gateway.statuses(idempotency_keys=keys)
    except GatewayError:
        logger.warning("reconciliation skipped a batch: the gateway's ledger did not answer")
        return
    for (order_id, _status, captures, refunded, pending_refunds), key in zip(rows, keys, strict=True):
        entry = ledger.get(key)
        kind = disagreement(
            captures=captures, refunded=refunded, pending_refunds=pending_refunds, entry=entry
        )
        if kind == LATE_CAPTURE:
            if _record_late_capture(str(order_id)):
                _found(found, LATE_CAPTURE, str(order_id), "the gateway captured a payment recorded as not")
        elif kind == CAPTURED_UNKNOWN_TO_LEDGER:
            _found(found, CAPTURED_UNKNOWN_TO_LEDGER, str(order_id), "captured here, not at the gateway")
        elif kind == REFUND_MISMATCH and entry is not None:
            _found(found, REFUND_MISMATCH, str(order_id), f"refunded {refunded} here, {entry.refunded} there")


def disagreement(
    *, captures: int, refunded: object, pending_refunds: int, entry: LedgerStatus | None
) -> str | None:
    """How a settled payment disagrees with the ledger's ``entry`` (one of the kinds above), or None.

    Also what the ops console shows for one order (``payments.console``).
    """
    captured_at_gateway = entry is not None and entry.captured
    if captured_at_gateway and not captures:
        return LATE_CAPTURE
    if captures and not captured_at_gateway:
        return CAPTURED_UNKNOWN_TO_LEDGER
    if entry is not None and captures and not pending_refunds and entry.refunded != refunded:
        return REFUND_MISMATCH
    return None


def _record_late_capture(order_id: str) -> bool:
    before = load_payment(order_id)
    after = record(order_id, Payment.reconcile_capture, cause_id=before.request_command_id, known=before)
    return after.captures > before.captures


def _found(found: Counter[str], kind: str, order_id: str, detail: str) -> None:
    found[kind] += 1
    metrics.count_reconciliation(kind)
    logger.warning(
        "reconciliation with the gateway: %s",
        detail,
        extra={"order_id": order_id, "correlation_id": order_id, "kind": kind},
    )
