"""Gauges computed when Prometheus scrapes: state that lives in the database and in Redis.

Counting rows at scrape time is right for state (sagas by state, the outbox backlog, dead
letters) and needs no bookkeeping in the writers. Each query is small (open sagas, unsent
outbox rows and unreplayed dead letters are few, and partial indexes cover them) and runs
under a short statement timeout. A dependency that does not answer costs only its own
gauges: ``oms_metrics_source_up{source}`` says which ones are missing, and the rest of
``/metrics`` is still served.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings
from django.db import connection, connections, transaction
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import replica

logger = logging.getLogger(__name__)

OPEN_SAGA_STATES = ("STARTED", "INVENTORY_RESERVED", "PAYMENT_PROCESSING", "COMPENSATING")
TERMINAL_SAGA_STATES = ("COMPLETED", "COMPENSATED", "FAILED")
BREAKER_STATES = {"CLOSED": 0, "OPEN": 1, "HALF_OPEN": 2}
STATEMENT_TIMEOUT_MS = 500


class StateCollector(Collector):
    """The scrape-time gauges of the deployment unit (collected by the web process only)."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "oms_metrics_source_up",
            "Whether a scrape-time source answered (1) or not (0).",
            labels=["source"],
        )
        sources: list[tuple[str, Callable[[], list[Metric]]]] = [
            ("database", _database_metrics),
            ("breaker", _breaker_metrics),
            ("projections", _projection_metrics),
            ("audit", _audit_metrics),
        ]
        if replica.configured():
            sources.append(("replica", _replica_metrics))
        for name, source in sources:
            try:
                metrics = source()
            except Exception as exc:  # noqa: BLE001 - a source that fails must not break /metrics
                logger.warning("metrics source %s failed: %s", name, type(exc).__name__)
                up.add_metric([name], 0)
                continue
            up.add_metric([name], 1)
            yield from metrics
        yield up


# --- Database -----------------------------------------------------------------------------------


def _database_metrics() -> list[Metric]:
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")
            return [
                *_saga_metrics(cursor),
                *_outbox_metrics(cursor),
                _dead_letter_metric(cursor),
                *_connection_metrics(cursor),
            ]
    except Exception:
        # A broken connection (the database went away) must not be reused by the next scrape.
        connection.close_if_unusable_or_obsolete()
        raise


def _saga_metrics(cursor: Any) -> list[Metric]:
    placeholders = ", ".join(["%s"] * len(TERMINAL_SAGA_STATES))
    cursor.execute(
        "SELECT state, count(*), min(created_at), sum(CASE WHEN needs_attention THEN 1 ELSE 0 END) "
        f"FROM saga_instance WHERE state NOT IN ({placeholders}) GROUP BY state",
        list(TERMINAL_SAGA_STATES),
    )
    rows = cursor.fetchall()
    counts = dict.fromkeys(OPEN_SAGA_STATES, 0)
    oldest = None
    attention = 0
    for state, count, started, parked in rows:
        counts[state] = int(count)
        oldest = started if oldest is None or started < oldest else oldest
        attention += int(parked or 0)
    by_state = GaugeMetricFamily(
        "oms_sagas",
        "Sagas not yet terminal, by state (terminal ones: oms_saga_duration_seconds_count).",
        labels=["state"],
    )
    for state, count in counts.items():
        by_state.add_metric([state], count)
    age = 0.0 if oldest is None else (timezone.now() - oldest).total_seconds()
    return [
        by_state,
        GaugeMetricFamily(
            "oms_saga_oldest_open_age_seconds", "Age of the oldest saga not yet terminal (0 when none).", age
        ),
        GaugeMetricFamily(
            "oms_sagas_needing_attention",
            "Sagas parked with needs_attention (a compensation kept failing).",
            attention,
        ),
    ]


def _outbox_metrics(cursor: Any) -> list[Metric]:
    cursor.execute("SELECT count(*), min(created_at) FROM event_outbox WHERE sent_at IS NULL")
    count, oldest = cursor.fetchone()
    age = 0.0 if oldest is None else max((timezone.now() - oldest).total_seconds(), 0.0)
    return [
        GaugeMetricFamily("oms_outbox_backlog_messages", "Outbox rows not yet published.", int(count)),
        GaugeMetricFamily(
            "oms_outbox_backlog_age_seconds", "Age of the oldest unpublished outbox row (0 when none).", age
        ),
    ]


def _dead_letter_metric(cursor: Any) -> Metric:
    cursor.execute(
        "SELECT consumer, count(*) FROM event_dead_letter WHERE replayed_at IS NULL GROUP BY consumer"
    )
    family = GaugeMetricFamily(
        "oms_dead_letters", "Dead letters not replayed yet, by consuming context.", labels=["context"]
    )
    # Every consumer at 0 first: the alert tells "none" from "not scraped".
    counts = dict.fromkeys(_dead_letter_consumers(), 0)
    counts.update((consumer, int(count)) for consumer, count in cursor.fetchall())
    for consumer, count in sorted(counts.items()):
        family.add_metric([consumer], count)
    return family


def _dead_letter_consumers() -> list[str]:
    from eventstore.registry import contexts
    from eventstore.relay import DEAD_LETTER_CONSUMER

    return [*contexts(), DEAD_LETTER_CONSUMER]


def _connection_metrics(cursor: Any) -> list[Metric]:
    if connection.vendor != "postgresql":
        return []
    cursor.execute(
        "SELECT coalesce(state, 'unknown'), count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() GROUP BY 1"
    )
    used = GaugeMetricFamily(
        "oms_db_server_connections",
        "Connections to this database as the server sees them, by state.",
        labels=["state"],
    )
    for state, count in cursor.fetchall():
        used.add_metric([state], int(count))
    cursor.execute(
        "SELECT current_setting('max_connections')::int "
        "- current_setting('superuser_reserved_connections')::int"
    )
    limit = GaugeMetricFamily(
        "oms_db_server_connections_max",
        "Connection slots the server offers to ordinary clients.",
        int(cursor.fetchone()[0]),
    )
    return [used, limit]


# --- Read replica (config/replica.py) ------------------------------------------------------------


def _replica_metrics() -> list[Metric]:
    """How far the replica is behind: its replay delay, and the primary's WAL it has not replayed."""
    try:
        status = replica.replica_status()
    except Exception:
        connections[replica.REPLICA].close_if_unusable_or_obsolete()
        raise
    behind = max(0, replica.primary_position() - status.replayed) if status.in_recovery else 0
    return [
        GaugeMetricFamily(
            "oms_db_replica_lag_seconds",
            "How long the read replica's replay is behind the WAL it has received (0 when caught up).",
            status.lag_seconds,
        ),
        GaugeMetricFamily(
            "oms_db_replica_lag_bytes",
            "Bytes of the primary's WAL the read replica has not replayed yet.",
            float(behind),
        ),
        GaugeMetricFamily(
            "oms_db_replica_streaming",
            "Whether the read replica streams WAL from the primary (1) or not (0).",
            1.0 if status.streaming else 0.0,
        ),
    ]


# --- Circuit breaker ----------------------------------------------------------------------------


def _breaker_metrics() -> list[Metric]:
    family = GaugeMetricFamily(
        "oms_payment_circuit_breaker_state",
        "The payment gateway's circuit breaker: 0 calls go through (closed, or the open period is over"
        " and the next call is the trial), 1 open (failing fast), 2 half-open (the trial call runs).",
        labels=["gateway"],
    )
    for gateway, state in _breaker_states().items():
        family.add_metric([gateway], BREAKER_STATES[state])
    return [family]


def _breaker_states() -> dict[str, str]:
    from payments.gateway import default_gateway

    name = default_gateway().name
    if not settings.REDIS_URL:
        return {name: "CLOSED"}  # embedded: the breaker lives in each process, nothing shared to read
    import redis

    prefix = str(getattr(settings, "PAYMENT_BREAKER_PREFIX", "oms:breaker"))
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        # The layout written by payments.breaker.RedisBreakerStore: open_until in Redis ms, and
        # the trial key while the one trial call of the half-open state runs.
        pipe = client.pipeline(transaction=False)
        pipe.hget(f"{prefix}:{name}:state", "open_until")
        pipe.exists(f"{prefix}:{name}:trial")
        pipe.time()
        raw_open_until, trial_running, (seconds, micros) = pipe.execute()
    finally:
        client.close()
    now_ms = seconds * 1000 + micros // 1000
    if now_ms < int(raw_open_until or 0):
        return {name: "OPEN"}
    # Past the open period calls reach the gateway again: the first is the trial, and while it
    # runs the others still fail fast (half-open). Before it starts nothing is refused, so an
    # idle system whose breaker opened once reads closed, not half-open until the next payment.
    return {name: "HALF_OPEN" if trial_running else "CLOSED"}


# --- Projections (the queries context) ----------------------------------------------------------


def _projection_metrics() -> list[Metric]:
    from queries import public as queries_public

    seconds = GaugeMetricFamily(
        "oms_projection_lag_seconds",
        "How far each read model is behind the event store (age of its oldest unapplied event).",
        labels=["projection"],
    )
    events = GaugeMetricFamily(
        "oms_projection_lag_events", "Events each read model has not applied yet.", labels=["projection"]
    )
    # queries.public.projection_lags(): [{"projection", "events", "seconds", ...}, ...]
    read_lags = getattr(queries_public, "projection_lags", None)
    for item in read_lags() if read_lags is not None else []:
        name = str(item["projection"])
        seconds.add_metric([name], float(item.get("seconds") or 0.0))
        events.add_metric([name], float(item.get("events") or 0))
    return [seconds, events]


# --- Money audit (computed every minute by config.audit.tasks, read back here) ------------------


def _audit_metrics() -> list[Metric]:
    from config.audit.gauge import stored_result

    discrepancies = GaugeMetricFamily(
        "oms_money_discrepancies",
        "Discrepancies the last money audit found, by kind (manage.py audit_money; absent when stale).",
        labels=["kind"],
    )
    last_run = GaugeMetricFamily(
        "oms_money_audit_last_run_timestamp_seconds",
        "When the last money audit ran (Unix time; absent when none ran in the last 10 minutes).",
        labels=[],
    )
    result = stored_result()
    if result is not None:
        for kind, count in sorted(result["by_kind"].items()):
            discrepancies.add_metric([kind], float(count))
        last_run.add_metric([], float(result["at"]))
    return [discrepancies, last_run]
