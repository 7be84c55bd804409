"""Dead letters: recording a message that failed every retry, and replaying it.

A replay goes back through the outbox with the *same* message id and body, so every context
that had already handled the message drops it (inbox) and only the one that failed acts. It is
recorded as an event, ``DeadLetterReplayed`` on the stream ``dead-letter-<id>``, naming who
replayed it (correlated with the dead letter's message, so an order's console shows it).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.db import transaction
from django.utils import timezone

from . import wakeup
from .models import DeadLetter, OutboxMessage

REPLAY_HEADER = "x-oms-replay-of"


class AlreadyReplayed(Exception):
    """The dead letter was replayed before."""


def record_dead_letter(
    *,
    consumer: str,
    raw_body: bytes,
    headers: dict[str, Any],
    exchange: str,
    routing_key: str,
    error: str,
    attempts: int,
    message_id: str = "",
) -> DeadLetter:
    """Store a dead letter in its own transaction (once per consumer and message while unreplayed)."""
    body, parsed = storable_body(raw_body)
    message_uuid = _uuid_or_new(message_id or str(parsed.get("message_id", "")))
    with transaction.atomic():
        existing = DeadLetter.objects.filter(
            consumer=consumer, message_id=message_uuid, replayed_at__isnull=True
        ).first()
        if existing is not None:
            return existing
        return DeadLetter.objects.create(
            consumer=consumer,
            message_id=message_uuid,
            message_type=_clean(str(parsed.get("type", "")))[:255] or "undecodable",
            correlation_id=_clean(str(parsed.get("correlation_id", "") or ""))[:255],
            exchange=exchange[:64],
            routing_key=routing_key[:255],
            body=body,
            headers={_clean(str(k)): _clean(str(v)) for k, v in headers.items()},
            error=_clean(error)[:4000],
            attempts=attempts,
        )


def replay_dead_letter(dead_letter_id: int, *, by: str) -> OutboxMessage:
    """Queue a dead letter for delivery again through the outbox; records who replayed it."""
    with transaction.atomic():
        dead = DeadLetter.objects.select_for_update().get(id=dead_letter_id)
        if dead.replayed_at is not None:
            raise AlreadyReplayed(f"dead letter {dead_letter_id} was replayed at {dead.replayed_at}")
        headers = {k: v for k, v in dead.headers.items() if not k.startswith("x-oms-")}
        headers[REPLAY_HEADER] = str(dead.id)
        row = OutboxMessage.objects.create(
            message_id=dead.message_id,
            exchange=dead.exchange,
            routing_key=dead.routing_key,
            body=dead.body,
            headers=headers,
        )
        dead.replayed_at = timezone.now()
        dead.replayed_by = by[:150]
        dead.save(update_fields=["replayed_at", "replayed_by"])
        _record_replay(dead, row)
        transaction.on_commit(wakeup.ring)
    return row


def dead_letter_stream(dead_letter_id: int) -> str:
    """The stream of a dead letter's own events (its replay, naming who replayed it)."""
    return f"dead-letter-{dead_letter_id}"


def _record_replay(dead: DeadLetter, row: OutboxMessage) -> None:
    """``DeadLetterReplayed`` on the dead letter's own stream (replayed once: always version 1)."""
    # Imported here: the store's publishing path (relay) records dead letters through this module.
    from .events import DeadLetterReplayed
    from .store import append

    replayed = DeadLetterReplayed(
        dead_letter_id=dead.id,
        message_id=str(dead.message_id),
        message_type=dead.message_type,
        consumer=dead.consumer,
        outbox_id=row.id,
        admin=dead.replayed_by,
    )
    append(
        context="eventstore",
        aggregate_type="dead_letter",
        aggregate_id=dead_letter_stream(dead.id),
        expected_version=0,
        events=[replayed],
        correlation_id=dead.correlation_id,
        causation_id=str(dead.message_id),
    )


def storable_body(raw_body: bytes) -> tuple[Any, dict[str, Any]]:
    """The body as PostgreSQL can store it (no NUL), and the parsed object when it was JSON."""
    text = raw_body.decode("utf-8", errors="replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and "\\u0000" not in text and "\x00" not in text:
        return parsed, parsed
    return {"raw": _clean(text)}, parsed if isinstance(parsed, dict) else {}


def _clean(text: str) -> str:
    # PostgreSQL text and jsonb refuse NUL characters.
    return text.replace("\x00", "\\x00")


def _uuid_or_new(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        return uuid.uuid4()
