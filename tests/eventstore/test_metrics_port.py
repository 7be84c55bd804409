"""A consumer in a container of its own serves its counters on ``METRICS_PORT`` (config/metrics_server.py).

A real ``manage.py consume probe`` with its own ``PROMETHEUS_MULTIPROC_DIR`` handles a message;
Prometheus's view of it is an HTTP scrape of that port, as the Kubernetes pods and compose
services are scraped.
"""

from __future__ import annotations

import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.eventstore.conftest import effects, probe_command, publish_raw
from tests.fixtures.stack import Stack

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack]

# Helper 2's port range of this machine's shared test runs.
METRICS_PORT = 8621


def _scrape() -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=2) as response:
            return response.read().decode()
    except OSError:
        return ""


def test_a_consumer_serves_its_own_counters_on_the_metrics_port(probe_stack: Stack, tmp_path: Path) -> None:
    # given a consumer with a metrics port and a multiprocess directory of its own
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    probe_stack.start_consumer(
        "probe", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), METRICS_PORT=str(METRICS_PORT)
    )

    # when it handles a message
    key = uuid.uuid4().hex
    message_id, body = probe_command("Touch", key=key)
    publish_raw(body, routing_key="probe.Touch", message_id=message_id)
    probe_stack.wait_until(lambda: effects(key) == 1, message="message handled")

    # then a scrape of its port shows the message counted
    line = 'oms_consumer_messages_handled_total{context="probe"} 1.0'
    probe_stack.wait_until(lambda: line in _scrape(), message=f"{line!r} on port {METRICS_PORT}")
