"""The ops console's read of one order's payment: the payment, its attempts and the ledger's view.

The payment is the projection ``payments_payment``; the attempts are the ``PaymentAttempted``
events of its stream (one per charge call, whatever it answered); the ledger is the gateway
simulator's record of what the external system did (``payments_gateway_charge`` and
``payments_gateway_refund``, read as the money audit reads them), with the reconciliation's
verdict on the two (:func:`payments.reconciliation.disagreement`).
"""

from __future__ import annotations

from typing import Any

from eventstore.store import load_stream

from .domain import PaymentStatus, idempotency_key_for, stream_id
from .events import PaymentAttempted
from .gateway import LedgerStatus
from .models import GatewayCharge, GatewayRefund, PaymentRecord
from .reconciliation import disagreement

# A payment still running is left to its runner: the reconciliation does not judge it yet.
_RUNNING = (PaymentStatus.PENDING, PaymentStatus.UNKNOWN)


def payment_console(order_id: str) -> dict[str, Any] | None:
    """``{"payment", "attempts", "ledger", "reconciliation"}`` of an order, or None without any.

    ``payment`` is None before the saga asked for one; ``ledger`` is None when the gateway never
    saw the order's key. ``reconciliation`` is ``"agrees"``, ``"running"`` (the payment is not
    settled yet) or the kind of disagreement the periodic reconciliation acts on.
    """
    record = PaymentRecord.objects.filter(pk=order_id).exclude(status="").first()
    key = idempotency_key_for(order_id)
    charge = GatewayCharge.objects.filter(idempotency_key=key).first()
    if record is None and charge is None:
        return None
    attempts = [
        {
            "attempt": event.data.get("attempt"),
            "outcome": event.data.get("outcome"),
            "error": event.data.get("error", ""),
            "may_land_until": event.data.get("may_land_until"),
            "at": event.occurred_at,
        }
        for event in load_stream(stream_id(order_id))
        if event.type == PaymentAttempted.event_type
    ]
    return {
        "payment": None if record is None else _payment(record),
        "attempts": attempts,
        "ledger": None if charge is None else _ledger(charge),
        "reconciliation": _verdict(record, charge),
    }


def _payment(record: PaymentRecord) -> dict[str, Any]:
    return {
        "payment_id": record.payment_id,
        "status": record.status,
        "amount": f"{record.amount:.2f}",
        "refunded_amount": f"{record.refunded_amount:.2f}",
        "attempts": record.attempts,
        "captures": record.captures,
        "pending_refunds": record.pending_refunds,
    }


def _ledger(charge: GatewayCharge) -> dict[str, Any]:
    refunds = GatewayRefund.objects.filter(idempotency_key=charge.idempotency_key).order_by("id")
    return {
        "idempotency_key": charge.idempotency_key,
        "status": charge.status,
        "amount": f"{charge.amount:.2f}",
        "refunded_amount": f"{charge.refunded_amount:.2f}",
        "charge_calls": charge.charge_calls,
        "created_at": charge.created_at,
        "updated_at": charge.updated_at,
        "refunds": [
            {"refund_key": r.refund_key, "amount": f"{r.amount:.2f}", "created_at": r.created_at}
            for r in refunds
        ],
    }


def _verdict(record: PaymentRecord | None, charge: GatewayCharge | None) -> str:
    if record is not None and record.status in _RUNNING:
        return "running"
    entry = None
    if charge is not None:
        entry = LedgerStatus(
            captured=charge.status == "CAPTURED", amount=charge.amount, refunded=charge.refunded_amount
        )
    found = disagreement(
        captures=record.captures if record is not None else 0,
        refunded=record.refunded_amount if record is not None else None,
        pending_refunds=record.pending_refunds if record is not None else 0,
        entry=entry,
    )
    return found or "agrees"
