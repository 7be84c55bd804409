"""Liveness and readiness probes (docs/operations.md "Health"): no auth, cheap, each check bounded (~1 s).

Readiness needs the database with every migration applied and the broker with its topology
declared (``manage.py migrate`` and ``manage.py declare_topology``, the deploy's one-shot
step): a process started on a fresh database would otherwise be routed traffic and answer
500 (no table), and one on a bare vhost would publish into nothing. The cache is reported but
a cache outage alone keeps the process ready, because reads degrade to the database. Each
check runs in its own thread so a dependency that hangs (a black-holed host) cannot hold the
probe past its deadline. Not ready is a 503 problem document naming what is missing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from django.conf import settings
from django.core.cache import cache
from django.db import connections
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from kombu import Connection
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .problems import problem_response

CHECK_TIMEOUT = 1.0
REQUIRED = ("database", "migrations", "broker", "topology")
OK = "ok"

logger = logging.getLogger(__name__)

# Databases (host, port, name) seen with every migration applied: that stays true for the
# life of the process (its code cannot gain migrations), so the migration graph is loaded
# only until the first success.
_migrated: set[tuple[str, str, str]] = set()


class NotReady(Exception):
    """A dependency answers but is not set up yet; the message is safe to show publicly."""


def check_database() -> None:
    """The default database answers ``SELECT 1``."""
    connection = connections["default"]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        # The check runs in a short-lived thread: its connection would otherwise leak.
        connection.close()


def check_migrations() -> None:
    """Every migration of the code is applied to the default database."""
    from django.db.migrations.executor import MigrationExecutor

    connection = connections["default"]
    key = (
        str(connection.settings_dict.get("HOST")),
        str(connection.settings_dict.get("PORT")),
        str(connection.settings_dict.get("NAME")),
    )
    if key in _migrated:
        return
    try:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    finally:
        connection.close()
    if pending:
        raise NotReady(f"{len(pending)} migrations not applied")
    _migrated.add(key)


def check_broker() -> None:
    """RabbitMQ accepts a connection (stack mode); the in-process bus of the embedded mode is always up."""
    if settings.EMBEDDED or not settings.BROKER_URL:
        return
    with Connection(settings.BROKER_URL, connect_timeout=CHECK_TIMEOUT) as connection:
        connection.ensure_connection(max_retries=0, interval_start=0, interval_step=0, timeout=CHECK_TIMEOUT)


def check_topology() -> None:
    """The broker has every exchange and queue of ``declare_topology`` (stack mode only)."""
    if settings.EMBEDDED or not settings.BROKER_URL:
        return
    from eventstore.topology import missing_topology

    with Connection(settings.BROKER_URL, connect_timeout=CHECK_TIMEOUT) as connection:
        connection.ensure_connection(max_retries=0, interval_start=0, interval_step=0, timeout=CHECK_TIMEOUT)
        missing = missing_topology(connection)
    if missing:
        raise NotReady(f"{missing} not declared")


def check_cache() -> None:
    """A value written to the cache reads back (the Redis client swallows errors, so test a round trip)."""
    key = f"health:ready:{uuid.uuid4().hex}"
    cache.set(key, OK, timeout=5)
    answered = cache.get(key)
    cache.delete(key)
    if answered != OK:
        raise ConnectionError("no answer")


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "migrations": check_migrations,
    "broker": check_broker,
    "topology": check_topology,
    "cache": check_cache,
}


def run_checks(*, timeout: float = CHECK_TIMEOUT) -> dict[str, str]:
    """Run every check concurrently; each reports ``"ok"`` or ``"down: <reason>"``."""
    pool = ThreadPoolExecutor(max_workers=len(CHECKS), thread_name_prefix="health")
    try:
        futures = {name: pool.submit(check) for name, check in CHECKS.items()}
        return {name: _outcome(name, future, timeout) for name, future in futures.items()}
    finally:
        # A hung check keeps its thread; the probe still answers on time.
        pool.shutdown(wait=False, cancel_futures=True)


def _outcome(name: str, future: Future[None], timeout: float) -> str:
    try:
        future.result(timeout=timeout)
    except FutureTimeout:
        logger.warning("readiness check %s gave no answer within %ss", name, timeout)
        return f"down: no answer within {timeout:g}s"
    except Exception as exc:  # noqa: BLE001 — any failure of a dependency means "down"
        logger.warning("readiness check %s failed: %s", name, exc)
        return f"down: {_reason(exc)}"
    return OK


def _reason(exc: Exception) -> str:
    # The probe is public: name the failure, never the host, user or connection string.
    if isinstance(exc, NotReady):
        return str(exc)
    strerror = getattr(exc, "strerror", None) or getattr(exc.__cause__, "strerror", None)
    return f"{type(exc).__name__}: {strerror}" if strerror else type(exc).__name__


# The one status a 200 carries (named HealthStatusEnum in the schema: SPECTACULAR_SETTINGS).
HEALTH_STATUSES = [OK]
_LIVE = inline_serializer("Liveness", fields={"status": serializers.ChoiceField(choices=HEALTH_STATUSES)})
_READY = inline_serializer(
    "Readiness",
    fields={
        "status": serializers.ChoiceField(choices=HEALTH_STATUSES),
        "checks": inline_serializer(
            "ReadinessChecks",
            fields={name: serializers.CharField(help_text='"ok" or "down: <reason>"') for name in CHECKS},
        ),
    },
)
_NOT_READY = inline_serializer(
    "NotReady",
    fields={
        "type": serializers.CharField(help_text="urn:oms:problem:service_unavailable"),
        "title": serializers.CharField(),
        "status": serializers.IntegerField(help_text="503"),
        "detail": serializers.CharField(help_text="The required checks that are down, with their reasons"),
        "checks": inline_serializer(
            "NotReadyChecks",
            fields={name: serializers.CharField(help_text='"ok" or "down: <reason>"') for name in CHECKS},
        ),
    },
)


class LiveView(APIView):
    """GET /health/live — 200 while the process serves requests."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    # Probes poll from one address; throttling them would fail a healthy pod.
    throttle_classes: list = []

    @extend_schema(
        operation_id="health_live",
        summary="Liveness: 200 while the process serves requests",
        tags=["health"],
        responses={200: _LIVE},
        auth=[],
    )
    def get(self, request: Request) -> Response:
        return Response({"status": "ok"})


class ReadyView(APIView):
    """GET /health/ready — 200 when the database (migrated) and the broker (topology declared)
    answer, else a 503 problem document naming what is down."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    # Probes poll from one address; throttling them would fail a healthy pod.
    throttle_classes: list = []

    @extend_schema(
        operation_id="health_ready",
        summary="Readiness: the database and the broker answer (the cache is reported)",
        tags=["health"],
        responses={
            200: _READY,
            503: OpenApiResponse(
                response=_NOT_READY,
                description="A problem document: the database or the broker is down, a migration is "
                "not applied or the broker topology is not declared",
            ),
        },
        auth=[],
    )
    def get(self, request: Request) -> Response:
        checks = run_checks()
        down = [f"{name} ({checks[name]})" for name in REQUIRED if checks[name] != OK]
        if not down:
            return Response({"status": OK, "checks": checks}, headers={"Cache-Control": "no-store"})
        return problem_response(
            503,
            code="service_unavailable",
            detail=f"Not ready: {'; '.join(down)}.",
            headers={"Cache-Control": "no-store"},
            checks=checks,
        )
