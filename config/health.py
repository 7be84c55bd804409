"""Liveness and readiness probes (README "API at a glance"): no auth, cheap, each check bounded (~1 s).

Readiness needs the database and the broker; the cache is reported but a cache outage alone
keeps the process ready, because reads degrade to the database. Each check runs in its own
thread so a dependency that hangs (a black-holed host) cannot hold the probe past its deadline.
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

CHECK_TIMEOUT = 1.0
REQUIRED = ("database", "broker")
OK = "ok"

logger = logging.getLogger(__name__)


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


def check_broker() -> None:
    """RabbitMQ accepts a connection (stack mode); the in-process bus of the embedded mode is always up."""
    if settings.EMBEDDED or not settings.BROKER_URL:
        return
    with Connection(settings.BROKER_URL, connect_timeout=CHECK_TIMEOUT) as connection:
        connection.ensure_connection(max_retries=0, interval_start=0, interval_step=0, timeout=CHECK_TIMEOUT)


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
    "broker": check_broker,
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
    strerror = getattr(exc, "strerror", None) or getattr(exc.__cause__, "strerror", None)
    return f"{type(exc).__name__}: {strerror}" if strerror else type(exc).__name__


_LIVE = inline_serializer("Liveness", fields={"status": serializers.ChoiceField(choices=[OK])})
_READY = inline_serializer(
    "Readiness",
    fields={
        "status": serializers.ChoiceField(choices=["ok", "unavailable"]),
        "checks": inline_serializer(
            "ReadinessChecks",
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
    """GET /health/ready — 200 when the database and the broker answer, else 503 naming what is down."""

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
            503: OpenApiResponse(response=_READY, description="The database or the broker is down"),
        },
        auth=[],
    )
    def get(self, request: Request) -> Response:
        checks = run_checks()
        ready = all(checks[name] == OK for name in REQUIRED)
        body = {"status": "ok" if ready else "unavailable", "checks": checks}
        return Response(body, status=200 if ready else 503, headers={"Cache-Control": "no-store"})
