"""A payment's history as an order's owner may see it: charge attempts, outcome, refunds.

Read from the payment's own stream (``payment-<order_id>``), the source of truth; only the
fields a customer may see are kept (never the card token or the gateway's keys).
"""

from __future__ import annotations

from typing import Any

from eventstore.store import load_stream

from .domain import stream_id

# Event type -> the data fields shown for it.
_SHOWN = {
    "PaymentRequested": ("amount",),
    "PaymentAttempted": ("attempt", "outcome", "error"),
    "PaymentOutcomeUnknown": ("error",),
    "PaymentProcessed": ("amount", "attempts"),
    "PaymentFailed": ("reason", "error", "attempts"),
    "RefundRequested": ("amount", "reason"),
    "PaymentRefunded": ("amount", "refunded_amount"),
}


def payment_history(order_id: str) -> list[dict[str, Any]]:
    """The payment's events, oldest first: ``{"at", "type", ...the fields shown for it}``."""
    return [
        {"at": event.occurred_at, "type": event.type}
        | {name: event.data.get(name) for name in _SHOWN[event.type] if name in event.data}
        for event in load_stream(stream_id(order_id))
        if event.type in _SHOWN
    ]
