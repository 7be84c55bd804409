"""/metrics: parses as Prometheus text, carries the oms_ metrics and the scrape-time gauges."""

from __future__ import annotations

import time
import uuid

import pytest
from django.test import override_settings

from tests.observability.conftest import parse_metrics, sample_value

pytestmark = pytest.mark.django_db

OWN_FAMILIES = {
    "oms_orders_created",
    "oms_orders_completed",
    "oms_orders_failed",
    "oms_orders_cancelled",
    "oms_orders_held",
    "oms_orders_refused_busy",
    "oms_payment_attempts",
    "oms_payment_outcomes",
    "oms_payment_reconciliations",
    "oms_saga_duration_seconds",
    "oms_sagas",
    "oms_saga_oldest_open_age_seconds",
    "oms_sagas_needing_attention",
    "oms_outbox_backlog_messages",
    "oms_outbox_backlog_age_seconds",
    "oms_projection_lag_seconds",
    "oms_projection_lag_events",
    "oms_consumer_messages_handled",
    "oms_consumer_messages_retried",
    "oms_consumer_messages_dead_lettered",
    "oms_dead_letters",
    "oms_relay_messages_published",
    "oms_relay_publish_failures",
    "oms_payment_circuit_breaker_state",
    "oms_payment_circuit_breaker_openings",
    "oms_pruned_rows",
    "oms_db_connections_open",
    "oms_db_server_connections",
    "oms_db_server_connections_max",
    "oms_metrics_source_up",
}


def scrape(api_client) -> dict[str, object]:
    response = api_client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return parse_metrics(response.content.decode())


def test_metrics_parse_without_auth_and_name_every_oms_family(api_client):
    api_client.get("/health/live")  # one request through the HTTP middleware first

    families = scrape(api_client)

    assert set(families) >= OWN_FAMILIES, sorted(OWN_FAMILIES - set(families))
    assert "django_http_requests_latency_seconds_by_view_method" in families
    assert (
        sample_value(families, "django_http_responses_total_by_status_view_method_total", status="200") >= 1
    )
    # No order id ever becomes a label value.
    for family in families.values():
        for sample in family.samples:
            for value in sample.labels.values():
                with pytest.raises(ValueError):
                    uuid.UUID(value)


def test_state_gauges_count_open_sagas_outbox_rows_and_dead_letters(api_client):
    from eventstore.deadletters import record_dead_letter
    from eventstore.models import OutboxMessage

    before = scrape(api_client)
    OutboxMessage.objects.create(
        message_id=uuid.uuid4(), exchange="oms.events", routing_key="probe.Nothing", body={}, headers={}
    )
    record_dead_letter(
        consumer="probe-context",
        raw_body=b'{"type": "Probe"}',
        headers={},
        exchange="oms.events",
        routing_key="probe.Probe",
        error="boom",
        attempts=4,
    )

    after = scrape(api_client)

    assert (
        sample_value(after, "oms_outbox_backlog_messages")
        == sample_value(before, "oms_outbox_backlog_messages") + 1
    )
    assert sample_value(after, "oms_outbox_backlog_age_seconds") >= 0
    assert sample_value(after, "oms_dead_letters", context="probe-context") == 1
    assert sample_value(after, "oms_metrics_source_up", source="database") == 1
    assert sample_value(after, "oms_db_server_connections_max") > 0
    assert sample_value(after, "oms_db_server_connections") >= 1
    states = {s.labels["state"] for s in after["oms_sagas"].samples}
    assert states == {"STARTED", "INVENTORY_RESERVED", "PAYMENT_PROCESSING", "COMPENSATING"}


def test_open_saga_is_counted_and_aged(api_client, alice_client):
    from inventory.public import upsert_product

    upsert_product(product_id="OBS-1", name="Observed", price="5.00", available=10)
    response = alice_client.post(
        "/api/orders",
        {"items": [{"product_id": "OBS-1", "quantity": 1}], "payment": {"method": "card", "token": "tok_ok"}},
        format="json",
    )
    assert response.status_code == 202, response.content

    families = scrape(api_client)

    assert sample_value(families, "oms_sagas", state="STARTED") >= 1
    assert sample_value(families, "oms_saga_oldest_open_age_seconds") >= 0


def test_breaker_gauge_follows_the_shared_breaker(api_client):
    from payments.breaker import make_breaker

    prefix = f"oms:test-breaker:{uuid.uuid4().hex}"
    with override_settings(PAYMENT_BREAKER_PREFIX=prefix):
        assert sample_value(scrape(api_client), "oms_payment_circuit_breaker_state", gateway="simulator") == 0
        breaker = make_breaker(name="simulator", prefix=prefix)
        for _ in range(5):
            with pytest.raises(ConnectionError):
                breaker.call(_failing_call)

        families = scrape(api_client)

    assert sample_value(families, "oms_payment_circuit_breaker_state", gateway="simulator") == 1
    breaker.store.reset()  # type: ignore[attr-defined]


def test_an_idle_system_has_every_label_set_at_zero_not_no_data(api_client):
    from eventstore.registry import contexts

    families = scrape(api_client)

    def labels(sample: str, label: str) -> set[str]:
        return {
            s.labels[label]
            for family in families.values()
            for s in family.samples  # type: ignore[attr-defined]
            if s.name == sample
        }

    consuming = set(contexts())
    assert consuming >= {"inventory", "payments", "queries", "sagas"}
    for counter in ("handled", "duplicates", "retried", "dead_lettered"):
        assert labels(f"oms_consumer_messages_{counter}_total", "context") >= consuming, counter
    assert labels("oms_dead_letters", "context") == consuming | {"relay"}
    assert all(s.value == 0 for s in families["oms_dead_letters"].samples)  # type: ignore[attr-defined]
    # the configured gateway's series exists from the start (breakers other tests of this
    # process made under names of their own may be there too)
    assert "simulator" in labels("oms_payment_circuit_breaker_openings_total", "gateway")
    assert labels("oms_pruned_rows_total", "table") == {"outbox", "inbox"}


def test_breaker_gauge_reads_closed_once_the_open_period_is_over_and_half_open_only_during_the_trial(
    api_client,
):
    from payments.breaker import BreakerConfig, make_breaker

    prefix = f"oms:test-breaker:{uuid.uuid4().hex}"

    def state() -> float:
        return sample_value(scrape(api_client), "oms_payment_circuit_breaker_state", gateway="simulator")

    def openings() -> float:
        return sample_value(
            scrape(api_client), "oms_payment_circuit_breaker_openings_total", gateway="simulator"
        )

    with override_settings(PAYMENT_BREAKER_PREFIX=prefix):
        before = openings()
        breaker = make_breaker(name="simulator", prefix=prefix, config=BreakerConfig(open_seconds=0.3))
        # given a breaker the window opened: open, and counted
        for _ in range(5):
            with pytest.raises(ConnectionError):
                breaker.call(_failing_call)
        assert state() == 1
        assert openings() == before + 1
        # when its open period ends and no payment comes, it reads closed (nothing is refused)
        deadline = time.monotonic() + 10
        while state() == 1:
            assert time.monotonic() < deadline, "still open 10 s after a 0.3 s period"
            time.sleep(0.05)
        assert state() == 0
        # while the next call, the trial, runs, it reads half-open; the trial failing opens it again
        permit = breaker.store.acquire()
        assert state() == 2
        assert breaker.store.record(permit=permit, failed=True) == "OPENED"  # the failed trial opened it
        assert state() == 1
        assert openings() == before + 2
    breaker.store.reset()  # type: ignore[attr-defined]


def test_an_unreachable_source_is_reported_and_the_rest_still_served(api_client):
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        families = scrape(api_client)

    assert sample_value(families, "oms_metrics_source_up", source="breaker") == 0
    assert sample_value(families, "oms_metrics_source_up", source="database") == 1
    assert "oms_outbox_backlog_messages" in families


def _failing_call() -> None:
    raise ConnectionError("gateway unreachable")
