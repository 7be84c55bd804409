"""The real Prometheus server against the stack, with the project's alert rules and dashboards.

gunicorn, the consumers and the relay run as in ``make stack`` (one PROMETHEUS_MULTIPROC_DIR);
Prometheus (Debian's package ``prometheus``) scrapes the web process every second and
evaluates ``deploy/prometheus/alerts.yml`` every second. The payment gateway is made to fail
(``tok_gateway_down``) until the breaker opens: the alert must fire although the breaker is
open for a few seconds only, and every expression of every dashboard must return data.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.fixtures.programs import required_program
from tests.observability.conftest import free_port, http, wait_until_up
from tests.observability.test_rules_and_dashboard import DASHBOARDS, PROMETHEUS_DIR

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}


def prometheus_binary() -> str:
    return required_program("prometheus", package="prometheus")


class Prometheus:
    """A running Prometheus server and its HTTP API."""

    def __init__(self, base: str, *, web: str) -> None:
        self.base = base
        self.web = web  # the unit it scrapes

    def query(self, expression: str) -> list[dict]:
        status, body = http("GET", f"{self.base}/api/v1/query?query={urllib.parse.quote(expression)}")
        assert status == 200, body
        return json.loads(body)["data"]["result"]

    def firing(self, alertname: str) -> list[dict]:
        status, body = http("GET", f"{self.base}/api/v1/alerts")
        assert status == 200, body
        return [
            alert
            for alert in json.loads(body)["data"]["alerts"]
            if alert["labels"]["alertname"] == alertname and alert["state"] == "firing"
        ]


@pytest.fixture
def prometheus(gunicorn_unit: str, tmp_path: Path) -> Iterator[Prometheus]:
    """Prometheus scraping ``gunicorn_unit`` every second with the project's rules."""
    binary = prometheus_binary()
    target = urllib.parse.urlsplit(gunicorn_unit).netloc
    config = tmp_path / "prometheus.yml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(PROMETHEUS_DIR / "alerts.yml")],
                "scrape_configs": [
                    {"job_name": "oms", "metrics_path": "/metrics", "static_configs": [{"targets": [target]}]}
                ],
            }
        )
    )
    port = free_port()
    log = (tmp_path / "prometheus.log").open("ab")
    server = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{base}/-/ready", server, tmp_path / "prometheus.log")
        yield Prometheus(base, web=gunicorn_unit)
    finally:
        server.terminate()
        server.wait(timeout=20)


@pytest.fixture
def fresh_breaker() -> Iterator[None]:
    """The simulator's shared breaker closed before and after (its state lives in Redis)."""
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL)
    prefix = str(getattr(settings, "PAYMENT_BREAKER_PREFIX", "oms:breaker"))
    keys = [f"{prefix}:simulator:{part}" for part in ("state", "trial", "window")]
    client.delete(*keys)
    yield
    client.delete(*keys)
    client.close()


def dashboard_expressions() -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for path in DASHBOARDS
        for panel in json.loads(path.read_text())["panels"]
        for target in panel.get("targets", [])
    ]


def wait_for(predicate, *, timeout: float, message: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, message() if callable(message) else message
        time.sleep(0.25)
    return value


@pytest.mark.stack
@pytest.mark.slow
def test_a_short_breaker_trip_fires_the_alert_and_every_dashboard_query_returns_data(
    stack_factory, prometheus, fresh_breaker, token_for
):
    from inventory.public import upsert_product
    from orders.handlers import load_order

    upsert_product(product_id="PROM-1", name="Scraped", price=Decimal("3.00"), available=100)
    token = token_for("alice")

    def place(card: str) -> str:
        body = {
            "items": [{"product_id": "PROM-1", "quantity": 1}],
            "payment": {"method": "card", "token": card},
        }
        status, answer = http("POST", f"{prometheus.web}/api/orders", token=token, body=body)
        assert status == 202, answer
        return json.loads(answer)["order_id"]

    # given Prometheus has scraped the breaker's openings at 0 on the healthy unit
    wait_for(
        lambda: [
            s for s in prometheus.query("oms_payment_circuit_breaker_openings_total") if s["value"][1] == "0"
        ],
        timeout=20,
        message="openings scraped at 0",
    )
    assert prometheus.firing("OmsPaymentCircuitBreakerOpen") == []

    # when one payment captures, then the gateway fails every attempt until the breaker opens
    # (the window's rule: at least half of the last calls, five at least)
    orders = [place("tok_ok")]
    stack_factory.wait_until(
        lambda: load_order(orders[0]).status == "COMPLETED", timeout=30, message="captured"
    )
    orders += [place("tok_gateway_down") for _ in range(2)]
    stack_factory.wait_until(
        lambda: all(load_order(o).status in TERMINAL for o in orders), timeout=30, message="orders terminal"
    )

    # then the alert fires at once (no 1-minute hold a 5-second opening would never satisfy)
    firing = wait_for(
        lambda: prometheus.firing("OmsPaymentCircuitBreakerOpen"), timeout=20, message="breaker alert firing"
    )
    assert firing[0]["labels"]["gateway"] == "simulator"
    assert firing[0]["labels"]["severity"] == "critical"
    # and once the open period is over, with no payment coming, the breaker reads closed
    wait_for(
        lambda: [s for s in prometheus.query("oms_payment_circuit_breaker_state") if s["value"][1] == "0"],
        timeout=20,
        message="breaker state back to 0",
    )
    assert prometheus.firing("OmsPaymentCircuitBreakerOpen"), "the alert stays for the window"

    # and every expression of every dashboard returns data: retried, dead-lettered and dead
    # letters included, though nothing was retried or dead-lettered
    expressions = dashboard_expressions()
    assert len(expressions) >= 20

    def empty() -> list[tuple[str, str]]:
        return [(title, expr) for title, expr in expressions if not prometheus.query(expr)]

    wait_for(lambda: not empty(), timeout=20, message=lambda: f"no data: {empty()}")
    assert prometheus.query('sum(oms_consumer_messages_retried_total{context="payments"})')
    assert prometheus.query('oms_dead_letters{context="relay"}')[0]["value"][1] == "0"
