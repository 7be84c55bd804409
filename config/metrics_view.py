"""``GET /metrics``: the Prometheus text of the whole deployment unit, no auth.

With ``PROMETHEUS_MULTIPROC_DIR`` set (stack mode: gunicorn workers, consumers, relay, Celery
share one directory), the answer sums every process's files, whichever worker serves the
scrape; without it (embedded mode, one process) it is this process's registry. The
scrape-time gauges of :mod:`config.metrics_state` are added in both cases. Before the first
answer this process creates every label set of the labelled counters at 0 (one per consuming
context, per gateway), so a healthy, idle system shows zeros, not "No data".
"""

from __future__ import annotations

import os

from django.http import HttpRequest, HttpResponse
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from config import metrics

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


_series_initialised = False


def _initialise_series() -> None:
    global _series_initialised
    if _series_initialised:
        return
    from django.conf import settings

    from eventstore.registry import contexts
    from payments import public as payments_public

    served = settings.OMS_CONTEXTS
    metrics.initialise_series(
        contexts=[context for context in contexts() if context in served],
        gateways=payments_public.gateway_names() if "payments" in served else [],
    )
    _series_initialised = True


def render_metrics() -> bytes:
    """The exposition text: process metrics, then the scrape-time state gauges."""
    _initialise_series()
    return generate_latest(process_registry()) + generate_latest(_state_registry)


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Serve :func:`render_metrics` (GET only; Prometheus never sends anything else)."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405, headers={"Allow": "GET, HEAD"})
    return HttpResponse(
        render_metrics(), content_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"}
    )
