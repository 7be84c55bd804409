"""The platform's own Prometheus metrics (``oms_…``, base units), in one place.

Every process of a deployment unit (gunicorn workers, consumers, the relay, Celery) writes
these to ``PROMETHEUS_MULTIPROC_DIR`` when it is set, and ``/metrics`` sums them (see
``config.metrics_view``). Labels are small closed sets: never an order id.

Counters of business facts move only when the transaction that recorded the fact commits,
so a rolled-back or retried decision is not counted twice. This module imports no context:
the event store and every context may use it.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.backends.signals import connection_created
from prometheus_client import Counter, Gauge, Histogram

# --- Orders -------------------------------------------------------------------------------------
ORDERS_CREATED = Counter("oms_orders_created", "Orders accepted (OrderCreated).")
ORDERS_COMPLETED = Counter("oms_orders_completed", "Orders that ended COMPLETED.")
ORDERS_FAILED = Counter("oms_orders_failed", "Orders that ended FAILED, by failure reason.", ["reason"])
ORDERS_CANCELLED = Counter("oms_orders_cancelled", "Orders that ended CANCELLED.")
ORDERS_HELD = Counter(
    "oms_orders_held",
    "Placements that waited for room under the bound on orders in progress (ORDER_INTAKE_MAX_OPEN).",
)
ORDERS_REFUSED_BUSY = Counter(
    "oms_orders_refused_busy",
    "Placements refused with 503: no room under the bound within ORDER_INTAKE_HOLD_SECONDS.",
)

# --- Payments -----------------------------------------------------------------------------------
PAYMENT_ATTEMPTS = Counter(
    "oms_payment_attempts",
    "Charge calls to the gateway, by what the call answered (captured, declined, transient, timeout).",
    ["outcome"],
)
PAYMENT_OUTCOMES = Counter(
    "oms_payment_outcomes",
    "Charge rounds that ended, by outcome (captured, PAYMENT_DECLINED, PAYMENT_UNAVAILABLE).",
    ["outcome"],
)

BREAKER_OPENINGS = Counter(
    "oms_payment_circuit_breaker_openings",
    "Times the payment gateway's circuit breaker opened (its window's rule, or a failed trial call).",
    ["gateway"],
)

PAYMENT_RECONCILIATIONS = Counter(
    "oms_payment_reconciliations",
    "Disagreements with the gateway's ledger found by the reconciliation, by kind "
    "(late_capture is corrected with an event; the others need a person).",
    ["kind"],
)

# --- Saga ---------------------------------------------------------------------------------------
SAGA_DURATION = Histogram(
    "oms_saga_duration_seconds",
    "Time from a saga's start to its terminal state, by that state.",
    ["state"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
)

# --- Transport ----------------------------------------------------------------------------------
CONSUMER_HANDLED = Counter(
    "oms_consumer_messages_handled",
    "Messages whose effect a context committed (once each, however often delivered).",
    ["context"],
)
CONSUMER_DUPLICATES = Counter(
    "oms_consumer_messages_duplicates",
    "Deliveries the inbox dropped: the context had already handled the message.",
    ["context"],
)
CONSUMER_RETRIED = Counter(
    "oms_consumer_messages_retried", "Messages sent to a retry (backoff) queue.", ["context"]
)
CONSUMER_DEAD_LETTERED = Counter(
    "oms_consumer_messages_dead_lettered", "Messages dead-lettered after their last retry.", ["context"]
)
RELAY_PUBLISHED = Counter("oms_relay_messages_published", "Outbox rows published and confirmed by RabbitMQ.")
RELAY_FAILED = Counter("oms_relay_publish_failures", "Outbox rows the broker did not take (retried later).")
OUTBOX_DEAD_LETTERED = Counter(
    "oms_outbox_dead_lettered",
    "Outbox rows moved to the dead letters after RELAY_MAX_ATTEMPTS attempts came back unroutable.",
)

# --- Retention (eventstore.retention) -----------------------------------------------------------
PRUNED_ROWS = Counter(
    "oms_pruned_rows", "Rows deleted by the retention tasks, by table (outbox, inbox).", ["table"]
)

# --- Database connections of this process ------------------------------------------------------
# Django keeps one persistent connection per thread (CONN_MAX_AGE); summed over live processes
# this is the deployment unit's share of the server's connection slots.
DB_CONNECTIONS_OPEN = Gauge(
    "oms_db_connections_open",
    "Database connections this process holds open (summed over live processes).",
    multiprocess_mode="livesum",
)

# --- Read replica (config/replica.py) ------------------------------------------------------------
REPLICA_FALLBACKS = Counter(
    "oms_db_replica_fallbacks",
    "Query-side reads the primary answered instead of the replica, by reason "
    "(error, recent_error, not_streaming, lagging).",
    ["reason"],
)


def count_after_commit(counters: Iterable[Counter]) -> None:
    """Increment each counter (a labelled child, or one without labels) once the transaction commits.

    The contexts choose the counters of their events (``orders.handlers``, ``payments.handlers``):
    this module knows no event.
    """
    counted = list(counters)
    if counted:
        transaction.on_commit(lambda: _increment(counted))


def _increment(counters: list[Counter]) -> None:
    for counter in counters:
        counter.inc()


def count_reconciliation(kind: str) -> None:
    """Count one disagreement the reconciliation with the gateway found (it has committed)."""
    PAYMENT_RECONCILIATIONS.labels(kind=kind).inc()


def count_handled(context: str, *, handled: int, duplicates: int = 0) -> None:
    """Count messages a consumer handled and duplicates it dropped, once their transaction commits.

    A batch that rolls back counts nothing, so re-running its messages one by one counts each
    committed one exactly once.
    """
    if handled or duplicates:
        transaction.on_commit(lambda: _count_handled(context, handled, duplicates))


def _count_handled(context: str, handled: int, duplicates: int) -> None:
    if handled:
        CONSUMER_HANDLED.labels(context=context).inc(handled)
    if duplicates:
        CONSUMER_DUPLICATES.labels(context=context).inc(duplicates)


def observe_saga_end(*, state: str, seconds: float) -> None:
    """Observe a saga's duration once the transaction that ended it commits."""
    transaction.on_commit(lambda: SAGA_DURATION.labels(state=state).observe(max(seconds, 0.0)))


def count_replica_fallback(reason: str) -> None:
    """A query-side read went to the primary because the replica could not answer it well."""
    REPLICA_FALLBACKS.labels(reason).inc()


def initialise_series(*, contexts: Iterable[str], gateways: Iterable[str]) -> None:
    """Create every label set of the labelled counters at 0, before anything counts.

    A labelled counter has no series until its first increment, so a dashboard shows "No
    data" on a healthy system and ``increase()`` misses the first step (a series that starts
    at 1 has no earlier sample to rise from). The process that serves ``/metrics`` calls this
    (``config.metrics_view``); in multiprocess mode its zeros are summed with the others.
    """
    for context in contexts:
        for counter in (CONSUMER_HANDLED, CONSUMER_DUPLICATES, CONSUMER_RETRIED, CONSUMER_DEAD_LETTERED):
            counter.labels(context=context)
    for gateway in gateways:
        BREAKER_OPENINGS.labels(gateway=gateway)
    for table in ("outbox", "inbox"):
        PRUNED_ROWS.labels(table=table)


def _on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    # Django has no "connection closed" signal: the gauge goes down when the driver's
    # connection object is collected, which CPython does as soon as Django drops it.
    raw = getattr(connection, "connection", None)
    if raw is None:
        return
    DB_CONNECTIONS_OPEN.inc()
    try:
        weakref.finalize(raw, DB_CONNECTIONS_OPEN.dec)
    except TypeError:  # a driver object without weak references: do not count it
        DB_CONNECTIONS_OPEN.dec()


connection_created.connect(_on_connection_created, dispatch_uid="oms-metrics-db-connections")
