"""The event store's own events (the catalogue: ``eventstore.catalogue``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .catalogue import Event, register


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetterReplayed(Event):
    """An ADMIN replayed a dead letter (stream ``dead-letter-<id>``)."""

    event_type: ClassVar[str] = "DeadLetterReplayed"
    dead_letter_id: int
    message_id: str
    message_type: str
    consumer: str
    outbox_id: int
    admin: str
