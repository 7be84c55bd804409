"""``GET /metrics``: the Prometheus text of the whole deployment unit, no auth.

With ``PROMETHEUS_MULTIPROC_DIR`` set (stack mode: gunicorn workers, consumers, relay, Celery
share one directory), the answer sums every process's files, whichever worker serves the
scrape; without it (embedded mode, one process) it is this process's registry. The
scrape-time gauges of :mod:`config.metrics_state` are added in both cases.
"""

from __future__ import annotations

import os

from django.http import HttpRequest, HttpResponse
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

import config.metrics  # noqa: F401 - registers the oms_ metrics in this process

from .metrics_state import StateCollector

_state_registry = CollectorRegistry(auto_describe=False)
_state_registry.register(StateCollector())


def process_registry() -> CollectorRegistry:
    """The registry summing every process of the unit, or this process's own."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    return registry


def render_metrics() -> bytes:
    """The exposition text: process metrics, then the scrape-time state gauges."""
    return generate_latest(process_registry()) + generate_latest(_state_registry)


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Serve :func:`render_metrics` (GET only; Prometheus never sends anything else)."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405, headers={"Allow": "GET, HEAD"})
    return HttpResponse(
        render_metrics(), content_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"}
    )
