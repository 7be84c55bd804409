"""``/metrics`` for a process that serves no HTTP of its own, when it runs in a container of its own.

In ``make stack`` every process shares one ``PROMETHEUS_MULTIPROC_DIR`` and the web process's
``/metrics`` sums them all. In a container (docker compose, Kubernetes) each process kind has
its own directory, so the consumers, the relay and the Celery worker each serve the sum of
their own directory on ``METRICS_PORT`` (set only there), from a daemon thread, and Prometheus
scrapes them beside the web pods. Unset (``make stack``, the tests), nothing is started.
"""

from __future__ import annotations

import logging
import os

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

logger = logging.getLogger(__name__)

ENV_PORT = "METRICS_PORT"


def process_registry() -> CollectorRegistry:
    """The sum of ``PROMETHEUS_MULTIPROC_DIR`` at each scrape, or this process's own registry.

    The same sum as config.metrics_view's, without its scrape-time state gauges (those are the
    web process's, and reading them would tie the event store's commands to every context).
    """
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    return registry


def serve_metrics_if_configured() -> int | None:
    """Start the exporter on ``METRICS_PORT`` (all interfaces); returns the port, or ``None``."""
    port = os.environ.get(ENV_PORT, "")
    if not port:
        return None
    start_http_server(int(port), addr=os.environ.get("METRICS_HOST", "0.0.0.0"), registry=process_registry())  # noqa: S104
    logger.info("serving /metrics on port %s", port)
    return int(port)
