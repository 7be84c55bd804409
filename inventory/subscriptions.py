"""The inventory context's answers to the saga's commands (the message contract, docs/architecture.md
"Messages").

Each runs inside the transaction that eventstore.handling opened with the inbox row, so a
redelivered command has no second effect. A malformed command raises and is retried, then
dead-lettered; a busy bulkhead raises and is retried. A batch of commands is prepared first
(:func:`inventory.handlers.prepare_batch`): its reservations and products locked together, so
each command then decides on rows already in hand.
"""

from __future__ import annotations

import logging

from eventstore.commands import validated
from eventstore.messages import Message
from eventstore.registry import handles, prepares

from .domain import ReservationReleased
from .handlers import confirm_reservation, default_expiry, prepare_batch, release_reservation, reserve_stock
from .public import CONTEXT
from .serializers import OrderInput, ReleaseInput, ReserveInput

logger = logging.getLogger(__name__)

prepares(CONTEXT)(prepare_batch)


@handles(CONTEXT, commands=("ReserveInventory",))
def on_reserve_inventory(message: Message) -> None:
    """Hold the order's lines, answering InventoryReserved or InventoryReservationFailed."""
    command = validated(ReserveInput, message)
    order_id = str(command["order_id"])
    reserve_stock(
        order_id=order_id,
        lines=ReserveInput.lines_of(command),
        expires_at=command.get("expires_at") or default_expiry(),
        correlation_id=order_id,
        causation_id=message.message_id,
    )


@handles(CONTEXT, commands=("ConfirmInventory",))
def on_confirm_inventory(message: Message) -> None:
    """Sell the held units, answering InventoryConfirmed.

    A confirm of a released reservation is stale: the saga that sent it has compensated since
    (its command came back late, e.g. through a retry queue, behind the release). It is
    consumed without effect instead of being retried until it is dead-lettered; nothing is sold.
    """
    order_id = str(validated(OrderInput, message)["order_id"])
    try:
        confirm_reservation(order_id=order_id, correlation_id=order_id, causation_id=message.message_id)
    except ReservationReleased:
        logger.warning(
            "stale ConfirmInventory: the reservation was released, nothing sold",
            extra={"correlation_id": order_id, "message_id": message.message_id},
        )


@handles(CONTEXT, commands=("ReleaseInventory",))
def on_release_inventory(message: Message) -> None:
    """Give back (or restock) the order's units, answering InventoryReleased."""
    command = validated(ReleaseInput, message)
    order_id = str(command["order_id"])
    release_reservation(
        order_id=order_id,
        reason=command["reason"],
        correlation_id=order_id,
        causation_id=message.message_id,
    )
