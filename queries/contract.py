"""The events the read side consumes, as it reads them: their types and the members it uses.

The read side imports neither orders nor sagas, nor payments (import-linter contracts: the
contexts below sagas are independent, and a query service can be moved out alone), so the
events it projects are declared here by their stored names, the one place the read side names
them. ``tests/queries/test_contract.py`` checks every
entry against the event catalogue (``eventstore.catalogue``): the type is registered, in the
schema version read here, with these members — so renaming an order event or one of these
members fails the suite.
"""

from __future__ import annotations

ORDER_CREATED = "OrderCreated"
ORDER_STATUS_UPDATED = "OrderStatusUpdated"
ORDER_COMPLETED = "OrderCompleted"
ORDER_CANCELLED = "OrderCancelled"
ORDER_FAILED = "OrderFailed"
ORDER_EVENTS = (ORDER_CREATED, ORDER_STATUS_UPDATED, ORDER_COMPLETED, ORDER_CANCELLED, ORDER_FAILED)

PAYMENT_PROCESSED = "PaymentProcessed"
PAYMENT_FAILED = "PaymentFailed"
PAYMENT_EVENTS = (PAYMENT_PROCESSED, PAYMENT_FAILED)

# ``{event type: (schema version, members read)}``: what the projections rely on.
READS: dict[str, tuple[int, tuple[str, ...]]] = {
    ORDER_CREATED: (1, ("customer_id", "items", "total_amount")),
    ORDER_STATUS_UPDATED: (1, ("status",)),
    ORDER_COMPLETED: (1, ()),
    ORDER_CANCELLED: (1, ()),
    ORDER_FAILED: (1, ("reason",)),
    PAYMENT_PROCESSED: (1, ("order_id",)),
    PAYMENT_FAILED: (1, ("order_id",)),
}
