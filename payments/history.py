"""A payment's history as an order's owner may see it: charge attempts, outcome, refunds.

Read from the payment's own stream (``payment-<order_id>``), the source of truth; only the
fields a customer may see are kept (never the card token or the gateway's keys).
"""

from __future__ import annotations

from typing import Any

from eventstore.store import load_stream

from .domain import stream_id
from .events import (
    PaymentAttempted,
    PaymentFailed,
    PaymentOutcomeUnknown,
    PaymentProcessed,
    PaymentRefunded,
    PaymentRequested,
    RefundRequested,
)

# Event type -> the data fields shown for it.
_SHOWN = {
    PaymentRequested.event_type: ("amount",),
    PaymentAttempted.event_type: ("attempt", "outcome", "error"),
    PaymentOutcomeUnknown.event_type: ("error",),
    PaymentProcessed.event_type: ("amount", "attempts"),
    PaymentFailed.event_type: ("reason", "error", "attempts"),
    RefundRequested.event_type: ("amount", "reason"),
    PaymentRefunded.event_type: ("amount", "refunded_amount"),
}


def payment_history(order_id: str) -> list[dict[str, Any]]:
    """The payment's events, oldest first: ``{"at", "type", ...the fields shown for it}``."""
    return [
        {"at": event.occurred_at, "type": event.type}
        | {name: event.data.get(name) for name in _SHOWN[event.type] if name in event.data}
        for event in load_stream(stream_id(order_id))
        if event.type in _SHOWN
    ]
