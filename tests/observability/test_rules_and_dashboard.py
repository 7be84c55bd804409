"""Alert rules pass their promtool unit tests, and every metric they and the dashboard use exists."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.fixtures.programs import required_program
from tests.observability.conftest import parse_metrics

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
METRIC_NAME = re.compile(r"\b((?:oms|django_http)_[a-zA-Z0-9_]+)")


def promtool() -> str:
    return required_program("promtool", package="prometheus")


def test_alert_rules_are_valid():
    result = subprocess.run(
        [promtool(), "check", "rules", str(PROMETHEUS_DIR / "alerts.yml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rule_unit_tests_pass():
    result = subprocess.run(
        [promtool(), "test", "rules", "alerts_test.yml"], capture_output=True, text=True, cwd=PROMETHEUS_DIR
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_scrape_config_is_valid():
    result = subprocess.run(
        [promtool(), "check", "config", "prometheus.yml"], capture_output=True, text=True, cwd=PROMETHEUS_DIR
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test():
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    tested = {case["alertname"] for test in tests["tests"] for case in test.get("alert_rule_test", [])}
    assert alerts == tested
    assert {"OmsHighErrorRate", "OmsHighLatencyP95", "OmsPaymentCircuitBreakerOpen"} <= alerts
    assert {"OmsDatabasePoolExhausted", "OmsSagaStuck", "OmsSagaNeedsAttention", "OmsDeadLetters"} <= alerts


def test_dashboard_is_provisioned_and_covers_every_area():
    assert DASHBOARDS, "no dashboard JSON in deploy/grafana/dashboards"
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    assert yaml.safe_load((provisioning / "dashboards" / "oms.yml").read_text())["providers"]
    assert yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    dashboard = json.loads(DASHBOARDS[0].read_text())
    rows = {panel["title"] for panel in dashboard["panels"] if panel["type"] == "row"}
    assert rows == {
        "HTTP",
        "Business",
        "Saga",
        "Outbox, consumers and projections",
        "Circuit breaker and database",
    }


@pytest.mark.django_db
def test_every_metric_used_by_alerts_and_dashboards_is_exported(api_client):
    api_client.get("/health/live")
    exported = exported_series_names(parse_metrics(api_client.get("/metrics").content.decode()))

    used = used_metric_names()

    assert used, "no metric name found in the rules and dashboards"
    assert used <= exported, f"not exported by /metrics: {sorted(used - exported)}"


def exported_series_names(families: dict[str, object]) -> set[str]:
    """Every series name a family can produce (a labelled counter has none until it moves)."""
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_count", "_sum"),
        "summary": ("_count", "_sum"),
    }
    names: set[str] = set()
    for name, family in families.items():
        names.add(name)
        names.update(name + suffix for suffix in suffixes.get(family.type, ()))  # type: ignore[attr-defined]
    return names


def used_metric_names() -> set[str]:
    """Metric names in the alert expressions and the dashboards' queries."""
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    for path in DASHBOARDS:
        expressions += [
            target["expr"]
            for panel in json.loads(path.read_text())["panels"]
            for target in panel.get("targets", [])
        ]
    return {name for expression in expressions for name in METRIC_NAME.findall(expression)}
