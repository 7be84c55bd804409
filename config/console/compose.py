"""What the console shows, gathered from each context's public reads and the event store.

An order's page: the order, its saga (transitions, step attempts), its reservation, its payment
with the gateway ledger's view, every event of its streams (order, saga, reservation, payment,
and the replays of its dead letters) as a timeline and as a causation tree, the outbox rows and
dead letters of those messages, and its trace id. The summary: projection lag, the payment
circuit breaker, dead letters, outbox backlog and the sagas that need a look.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.utils import timezone

from eventstore import console as store
from eventstore.deadletters import dead_letter_stream
from inventory import public as inventory_public
from orders import public as orders_public
from payments import public as payments_public
from queries import public as queries_public
from sagas import public as sagas_public

logger = logging.getLogger(__name__)


def order_console(order_id: str) -> dict[str, Any] | None:
    """Everything about one order in one document, or None when there is no such order."""
    order = orders_public.order_overview(order_id)
    saga = sagas_public.saga_record(order_id)
    if order is None and saga is None:
        return None
    streams = [
        order_id,
        sagas_public.saga_stream(order_id),
        inventory_public.reservation_stream(order_id),
        payments_public.payment_stream(order_id),
    ]
    events = store.events_of(streams)
    attempts = saga["step_attempts"] if saga is not None else []
    message_ids = [e["message_id"] for e in events] + [a["message_id"] for a in attempts]
    dead_letters = store.dead_letters_of(correlation_id=order_id, message_ids=message_ids)
    # A replayed dead letter goes back through the outbox under its own message id.
    outbox = store.outbox_of([*message_ids, *(d["message_id"] for d in dead_letters)])
    if dead_letters:
        replays = store.events_of(dead_letter_stream(d["id"]) for d in dead_letters)
        events = sorted(events + replays, key=lambda e: e["position"])
    commands = _commands(outbox, attempts)
    trace_ids = list(dict.fromkeys(e["trace_id"] for e in events if e["trace_id"]))
    trace_id = trace_ids[0] if trace_ids else None
    return {
        "order_id": order_id,
        "order": order,
        "saga": saga,
        "reservation": inventory_public.reservation_of(order_id),
        "payment": payments_public.payment_console(order_id),
        "timeline": store.in_time_order([*events, *commands]),
        "causation_tree": store.causation_tree([_node(m) for m in [*events, *commands]]),
        "outbox": outbox,
        "dead_letters": dead_letters,
        "trace_id": trace_id,
        "trace_ids": trace_ids,
        "trace_url": trace_url(trace_id),
    }


def trace_url(trace_id: str | None) -> str | None:
    """``TRACE_URL_TEMPLATE`` with the trace id filled in (None without either)."""
    template = str(getattr(settings, "TRACE_URL_TEMPLATE", "") or "")
    if not template or not trace_id:
        return None
    return template.replace("{trace_id}", trace_id)


def _commands(outbox: list[dict[str, Any]], attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The commands sent for the order: from their outbox rows, or (once pruned) the saga's attempts."""
    found = {}
    for row in outbox:
        body = row["body"] if isinstance(row["body"], dict) else {}
        if body.get("kind") != "command":
            continue
        found[row["message_id"]] = {
            "message_id": row["message_id"],
            "kind": "command",
            "type": body.get("type", ""),
            "routing_key": row["routing_key"],
            "aggregate_id": body.get("aggregate_id", ""),
            "at": body.get("occurred_at") or row["created_at"],
            "causation_id": body.get("causation_id", ""),
            "data": body.get("data", {}),
            "sent_at": row["sent_at"],
        }
    for attempt in attempts:
        if attempt["message_id"] not in found:
            found[attempt["message_id"]] = {
                "message_id": attempt["message_id"],
                "kind": "command",
                "type": attempt["command"],
                "routing_key": "",
                "aggregate_id": "",
                "at": attempt["sent_at"],
                "causation_id": "",  # its outbox row was pruned: the cause is no longer known
                "data": {},
                "sent_at": None,
            }
    return list(found.values())


def _node(message: dict[str, Any]) -> dict[str, Any]:
    """A message as a node of the causation tree (its data stays in the timeline)."""
    return {
        "message_id": message["message_id"],
        "kind": message["kind"],
        "type": message["type"],
        "aggregate_id": message.get("aggregate_id", ""),
        "at": message["at"],
        "position": message.get("position"),
        "causation_id": message.get("causation_id", ""),
    }


# --- the front page -------------------------------------------------------------------------------


def summary() -> dict[str, Any]:
    """Projection lag, breaker state, dead letters, outbox backlog and sagas that need a look.

    The same readings as ``/metrics`` (``config.metrics_state``). A source that does not answer
    (Redis for the breaker) is reported in ``sources`` and its part is null; the rest is served.
    """
    sources: dict[str, bool] = {}
    dead = _read(sources, "database", store.dead_letter_counts)
    return {
        "as_of": timezone.now(),
        "projections": _read(sources, "projections", queries_public.projection_lags),
        "breaker": _read(sources, "breaker", _breakers),
        "dead_letters": None if dead is None else {"total": sum(dead.values()), "by_consumer": dead},
        "outbox_backlog": _read(sources, "outbox", store.outbox_backlog),
        "sagas": _read(sources, "sagas", sagas_public.counts_to_look_at),
        "sources": sources,
    }


def _breakers() -> list[dict[str, str]]:
    # The reading /metrics exports as oms_payment_circuit_breaker_state.
    return [
        {"gateway": gateway, "state": state} for gateway, state in payments_public.breaker_states().items()
    ]


def _read(sources: dict[str, bool], name: str, read: Any) -> Any:
    try:
        value = read()
    except Exception as exc:  # noqa: BLE001 - one source down must not take the summary with it
        logger.warning("console summary: %s did not answer: %s", name, type(exc).__name__)
        sources[name] = False
        return None
    sources[name] = sources.get(name, True)
    return value
