"""The saga listens to the answers of inventory and payments (idempotent through the inbox)."""

from collections.abc import Sequence

from eventstore.messages import Message
from eventstore.registry import handles, prepares

from . import handlers


@prepares("sagas")
def lock_batch_sagas(messages: Sequence[Message]) -> None:
    """Load and lock the sagas of a whole batch at once, before its answers are handled."""
    handlers.lock_sagas([handlers.order_of(message) for message in messages])


@handles("sagas", events=tuple(handlers.ANSWERS))
def advance_saga(message: Message) -> None:
    """Move the order's saga forward (or undo a late effect) on an answer."""
    handlers.react(message)
