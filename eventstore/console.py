"""The ops console's reads of the event store: streams, outbox rows, dead letters, causation.

The event store knows no context: callers name the streams and message ids they want (the
console's composer, ``config.console``, asks each context for its streams of an order). Every
read is by an indexed column: ``aggregate_id``, the outbox's and the dead letters'
``message_id``, the dead letters' ``correlation_id``.

Values under keys that hold secrets (a payment's card token) are masked in what is returned.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from django.db.models import Count
from django.utils import timezone

from .messages import utc_iso
from .models import DeadLetter, OutboxMessage, StoredEvent

# Keys whose values never leave through the console (the payment token travels in commands).
SECRET_KEYS = frozenset({"token", "payment_token", "password", "secret"})
MASK = "***"


def masked(value: Any) -> Any:
    """``value`` with every secret key's value replaced by ``***`` (dicts and lists, recursively)."""
    if isinstance(value, dict):
        return {k: MASK if str(k).lower() in SECRET_KEYS else masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(item) for item in value]
    return value


def events_of(stream_ids: Iterable[str]) -> list[dict[str, Any]]:
    """Every event of ``stream_ids`` in the order they were stored (global position)."""
    rows = StoredEvent.objects.filter(aggregate_id__in=sorted(set(stream_ids))).order_by("id")
    return [
        {
            "position": row.id,
            "message_id": str(row.message_id),
            "kind": "event",
            "type": row.event_type,
            "aggregate_type": row.aggregate_type,
            "aggregate_id": row.aggregate_id,
            "version": row.version,
            "at": utc_iso(row.timestamp),
            "correlation_id": row.correlation_id,
            "causation_id": row.causation_id,
            "trace_id": row.trace_id,
            "data": masked(row.event_data),
        }
        for row in rows
    ]


def outbox_of(message_ids: Iterable[str]) -> list[dict[str, Any]]:
    """The outbox rows (sent or not, until pruned) of ``message_ids``, oldest first."""
    rows = OutboxMessage.objects.filter(message_id__in=sorted(set(message_ids))).order_by("id")
    return [
        {
            "id": row.id,
            "message_id": str(row.message_id),
            "routing_key": row.routing_key,
            "kind": row.body.get("kind", "") if isinstance(row.body, dict) else "",
            "type": row.body.get("type", "") if isinstance(row.body, dict) else "",
            "created_at": row.created_at,
            "sent_at": row.sent_at,
            "attempts": row.attempts,
            "last_error": row.last_error,
            "replay_of": row.headers.get("x-oms-replay-of") if isinstance(row.headers, dict) else None,
            "body": masked(row.body),
        }
        for row in rows
    ]


def dead_letters_of(*, correlation_id: str, message_ids: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The dead letters about ``correlation_id`` or of one of ``message_ids``, oldest first."""
    rows = DeadLetter.objects.filter(correlation_id=correlation_id) | DeadLetter.objects.filter(
        message_id__in=sorted(set(message_ids))
    )
    return [
        {
            "id": row.id,
            "consumer": row.consumer,
            "message_id": str(row.message_id),
            "message_type": row.message_type,
            "routing_key": row.routing_key,
            "error": row.error,
            "attempts": row.attempts,
            "created_at": row.created_at,
            "replayed_at": row.replayed_at,
            "replayed_by": row.replayed_by,
            "body": masked(row.body),
        }
        for row in rows.order_by("id")
    ]


def dead_letter_counts() -> dict[str, int]:
    """``{consumer: dead letters not replayed yet}`` (what ``oms_dead_letters`` counts)."""
    rows = (
        DeadLetter.objects.filter(replayed_at__isnull=True)
        .values("consumer")
        .annotate(n=Count("id"))
        .order_by("consumer")
    )
    return {row["consumer"]: int(row["n"]) for row in rows}


def outbox_backlog() -> int:
    """Outbox rows not yet published (what ``oms_outbox_backlog_messages`` counts)."""
    return OutboxMessage.objects.filter(sent_at__isnull=True).count()


def causation_tree(nodes: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages of ``nodes`` as a forest: each under the message its ``causation_id`` names.

    ``nodes`` (events and commands) carry ``message_id``, ``causation_id`` and ``at``; a node
    whose cause is not among them (an HTTP request, an operator, a pruned outbox row) is a
    root. Siblings and roots are in time order. Each node is copied with ``children`` added.
    """
    copies = {str(n["message_id"]): {**n, "children": []} for n in in_time_order(nodes)}
    parent_of = {
        message_id: str(node.get("causation_id") or "")
        for message_id, node in copies.items()
        if str(node.get("causation_id") or "") in copies and node.get("causation_id") != message_id
    }
    roots = []
    for message_id, node in copies.items():
        parent = parent_of.get(message_id)
        if parent is None or _in_a_cycle(message_id, parent_of):
            roots.append(node)
        else:
            copies[parent]["children"].append(node)
    return roots


def in_time_order(messages: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages (with ``at`` and, for events, ``position``) by time; at one moment, events by
    position first, then commands (those have no position)."""

    def key(message: dict[str, Any]) -> tuple[datetime, int, int]:
        position = message.get("position")
        return (_moment(message.get("at")), 0 if position is not None else 1, position or 0)

    return sorted(messages, key=key)


def _in_a_cycle(message_id: str, parent_of: dict[str, str]) -> bool:
    """Whether following causes up from ``message_id`` comes back to it (bad data, never a loop)."""
    seen = {message_id}
    current = parent_of.get(message_id)
    while current is not None:
        if current in seen:
            return True
        seen.add(current)
        current = parent_of.get(current)
    return False


def _moment(value: Any) -> datetime:
    # Events carry ISO text (utc_iso), commands their body's occurred_at or a datetime.
    if isinstance(value, datetime):
        return value if timezone.is_aware(value) else timezone.make_aware(value, UTC)
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return _EARLIEST
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, UTC)


_EARLIEST = datetime.min.replace(tzinfo=UTC)
