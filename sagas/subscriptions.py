"""The saga listens to the answers of inventory and payments (idempotent through the inbox)."""

from eventstore.messages import Message
from eventstore.registry import handles

from . import domain, handlers


@handles("sagas", events=tuple(domain.ANSWERS))
def advance_saga(message: Message) -> None:
    """Move the order's saga forward (or undo a late effect) on an answer."""
    handlers.react(message)
