"""The queries context's subscriptions: order and payment events feed the read models.

Each runs in the transaction eventstore.handling opens with the inbox row (a redelivered
message has no second effect); a batch of messages shares one transaction, and is prepared
first (:func:`queries.projections.prepare_batch`: the batch's cursors claimed together, its
read-model rows written together).
"""

from __future__ import annotations

from eventstore.messages import Message
from eventstore.registry import handles, prepares

from .contract import ORDER_EVENTS, PAYMENT_EVENTS
from .projections import prepare_batch, project
from .public import CONTEXT

prepares(CONTEXT)(prepare_batch)


@handles(CONTEXT, events=ORDER_EVENTS + PAYMENT_EVENTS)
def on_projected_event(message: Message) -> None:
    """Apply the event to the live read models, in order per stream."""
    project(message)
