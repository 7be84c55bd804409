"""What other contexts may import from `payments`: names and read-only helpers, nothing else."""

from __future__ import annotations

from typing import Any

CONTEXT = "payments"


def payment_status(order_id: str) -> dict[str, Any] | None:
    """The body of ``GET /api/payments/{order_id}``, or None before the saga reached payment."""
    from .models import PaymentRecord

    row = PaymentRecord.objects.filter(pk=str(order_id)).exclude(status="").first()
    if row is None:
        return None
    return {
        "payment_id": row.payment_id,
        "order_id": row.order_id,
        "status": row.status,
        "amount": f"{row.amount:.2f}",
        "refunded_amount": f"{row.refunded_amount:.2f}",
        "attempts": row.attempts,
        "captures": row.captures,
    }
