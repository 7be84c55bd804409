"""Audit reads of the payments context: the payment projection and the gateway's ledger.

The ledger (``payments_gateway_charge`` / ``payments_gateway_refund``) is the simulator's
record of what the external system did; it is keyed by :func:`payments.domain.idempotency_key_for`,
so its rows map back to orders by that key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Count, DecimalField, OuterRef, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from .domain import CENT, ZERO, idempotency_key_for
from .models import GatewayCharge, GatewayRefund, PaymentRecord

_KEY_PREFIX = idempotency_key_for("")


@dataclass(frozen=True, slots=True)
class PaymentFact:
    """An order's payment as the projection ``payments_payment`` holds it."""

    order_id: str
    status: str
    amount: Decimal
    refunded: Decimal
    captures: int
    pending_refunds: int


@dataclass(frozen=True, slots=True)
class LedgerFact:
    """An order's entry in the gateway's ledger, with the refund rows kept for it."""

    order_id: str
    status: str
    amount: Decimal
    refunded: Decimal
    refund_rows_total: Decimal
    refund_rows: int

    @property
    def captured(self) -> bool:
        """Whether the gateway holds a capture for the order."""
        return self.status == "CAPTURED"

    @property
    def net(self) -> Decimal:
        """What the gateway kept: the capture less its refunds (0 without a capture)."""
        return self.amount - self.refunded if self.captured else ZERO


def payment_facts(*, since: datetime | None = None) -> dict[str, PaymentFact]:
    """``{order id: payment}`` of every payment projection row (created at or after ``since``)."""
    rows = PaymentRecord.objects.order_by()
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    return {
        order_id: PaymentFact(order_id, status, _money(amount), _money(refunded), captures, pending)
        for order_id, status, amount, refunded, captures, pending in rows.values_list(
            "order_id", "status", "amount", "refunded_amount", "captures", "pending_refunds"
        ).iterator(chunk_size=5000)
    }


def ledger_facts(*, since: datetime | None = None) -> dict[str, LedgerFact]:
    """``{order id: ledger entry}`` of every order's charge (created at or after ``since``)."""
    refunds = GatewayRefund.objects.filter(idempotency_key=OuterRef("idempotency_key")).order_by()
    money = DecimalField(max_digits=14, decimal_places=2)
    rows = GatewayCharge.objects.filter(idempotency_key__startswith=_KEY_PREFIX).order_by()
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    rows = rows.annotate(
        refund_total=Coalesce(
            Subquery(refunds.values("idempotency_key").annotate(total=Sum("amount")).values("total")),
            Value(ZERO),
            output_field=money,
        ),
        refund_count=Coalesce(
            Subquery(refunds.values("idempotency_key").annotate(count=Count("id")).values("count")),
            Value(0),
        ),
    )
    facts = {}
    for key, status, amount, refunded, refund_total, refund_count in rows.values_list(
        "idempotency_key", "status", "amount", "refunded_amount", "refund_total", "refund_count"
    ).iterator(chunk_size=5000):
        order_id = key[len(_KEY_PREFIX) :]
        facts[order_id] = LedgerFact(
            order_id=order_id,
            status=status,
            amount=_money(amount),
            refunded=_money(refunded),
            refund_rows_total=_money(refund_total),
            refund_rows=int(refund_count),
        )
    return facts


def _money(value: object) -> Decimal:
    # SQLite may hand back a float or text for a NUMERIC computed in SQL.
    return Decimal(str(value)).quantize(CENT)
