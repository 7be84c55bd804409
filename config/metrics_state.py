"""Gauges computed when Prometheus scrapes: state that lives in the database and in Redis.

The composition root's side of the scrape: each context reads its own state through its
``public.py`` (``sagas.public.open_sagas``, ``payments.public.breaker_states``,
``queries.public.projection_lags``) and the event store its outbox and dead letters
(``eventstore.gauges``); this module only names the gauges. No table, event name or Redis key of
a context is known here.

Counting rows at scrape time is right for state (sagas by state, the outbox backlog, dead
letters) and needs no bookkeeping in the writers. Each query is small (open sagas, unsent
outbox rows and unreplayed dead letters are few, and partial indexes cover them) and runs
under a short statement timeout. A dependency that does not answer costs only its own
gauges: ``oms_metrics_source_up{source}`` says which ones are missing, and the rest of
``/metrics`` is still served. A split service (``OMS_SERVICE``) collects only its own contexts'
gauges, plus the event store's outbox and dead letters, which every service shares.
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
        sources: list[tuple[str, Callable[[], list[Metric]]]] = [("database", _database_metrics)]
        # A split service exports the gauges of its own contexts only (OMS_SERVICE).
        served = settings.OMS_CONTEXTS
        if "payments" in served:
            sources.append(("breaker", _breaker_metrics))
        if "queries" in served:
            sources.append(("projections", _projection_metrics))
        if not settings.SPLIT:
            sources.append(("audit", _audit_metrics))
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
        # One transaction, so the statement timeout bounds every reading below.
        with transaction.atomic(), connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")
            return [
                *(_saga_metrics() if "sagas" in settings.OMS_CONTEXTS else []),
                *_outbox_metrics(),
                _dead_letter_metric(),
                *_connection_metrics(cursor),
            ]
    except Exception:
        # A broken connection (the database went away) must not be reused by the next scrape.
        connection.close_if_unusable_or_obsolete()
        raise


def _saga_metrics() -> list[Metric]:
    from sagas import public as sagas_public

    open_sagas = sagas_public.open_sagas()
    by_state = GaugeMetricFamily(
        "oms_sagas",
        "Sagas not yet terminal, by state (terminal ones: oms_saga_duration_seconds_count).",
        labels=["state"],
    )
    for state, count in open_sagas.by_state.items():
        by_state.add_metric([state], count)
    oldest = open_sagas.oldest_started_at
    age = 0.0 if oldest is None else (timezone.now() - oldest).total_seconds()
    return [
        by_state,
        GaugeMetricFamily(
            "oms_saga_oldest_open_age_seconds", "Age of the oldest saga not yet terminal (0 when none).", age
        ),
        GaugeMetricFamily(
            "oms_sagas_needing_attention",
            "Sagas parked with needs_attention (a compensation kept failing).",
            open_sagas.needing_attention,
        ),
    ]


def _outbox_metrics() -> list[Metric]:
    from eventstore.gauges import outbox_backlog

    backlog = outbox_backlog()
    oldest = backlog.oldest_created_at
    age = 0.0 if oldest is None else max((timezone.now() - oldest).total_seconds(), 0.0)
    return [
        GaugeMetricFamily("oms_outbox_backlog_messages", "Outbox rows not yet published.", backlog.messages),
        GaugeMetricFamily(
            "oms_outbox_backlog_age_seconds", "Age of the oldest unpublished outbox row (0 when none).", age
        ),
    ]


def _dead_letter_metric() -> Metric:
    from eventstore.gauges import dead_letters

    family = GaugeMetricFamily(
        "oms_dead_letters", "Dead letters not replayed yet, by consuming context.", labels=["context"]
    )
    # Every consumer at 0 first: the alert tells "none" from "not scraped".
    for consumer, count in dead_letters().items():
        family.add_metric([consumer], count)
    return family


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
    from payments import public as payments_public

    for gateway, state in payments_public.breaker_states().items():
        family.add_metric([gateway], BREAKER_STATES[state])
    return [family]


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
    for item in queries_public.projection_lags():
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
