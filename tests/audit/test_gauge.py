"""``oms_money_discrepancies``: computed by the periodic task, read back by the scrape."""

from __future__ import annotations

import time

from django.conf import settings
from django.db import connection

from config.audit.money import KINDS
from tests.observability.conftest import parse_metrics, sample_value

from .conftest import CleanSet


def scrape(api_client) -> dict[str, object]:
    response = api_client.get("/metrics")
    assert response.status_code == 200
    return parse_metrics(response.content.decode())


def test_the_task_is_registered_and_on_the_beat_schedule() -> None:
    from config.celery_app import app

    app.loader.import_default_modules()
    scheduled = {entry["task"]: entry for entry in settings.CELERY_BEAT_SCHEDULE.values()}

    assert "config.audit.tasks.audit_money" in app.tasks
    assert scheduled["config.audit.tasks.audit_money"]["schedule"] == 60.0


def test_the_gauge_shows_the_last_audit_not_the_current_state(clean_set: CleanSet, api_client) -> None:
    from config.audit.tasks import audit_money

    families = scrape(api_client)
    assert "oms_money_discrepancies" in families, "exported (empty) before any audit ran"
    assert families["oms_money_discrepancies"].samples == []  # type: ignore[attr-defined]

    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE payments_gateway_charge SET status = 'CAPTURED' WHERE idempotency_key = %s",
            [f"order-{clean_set.declined}"],
        )
    assert scrape(api_client)["oms_money_discrepancies"].samples == [], "a scrape computes nothing"  # type: ignore[attr-defined]

    assert audit_money() == 2
    families = scrape(api_client)

    assert sample_value(families, "oms_money_discrepancies", kind="kept_capture") == 1
    assert sample_value(families, "oms_money_discrepancies", kind="projection_mismatch") == 1
    assert sample_value(families, "oms_money_discrepancies", kind="stalled") == 0
    assert len(families["oms_money_discrepancies"].samples) == len(KINDS)  # type: ignore[attr-defined]
    assert abs(sample_value(families, "oms_money_audit_last_run_timestamp_seconds") - time.time()) < 60
    assert sample_value(families, "oms_metrics_source_up", source="audit") == 1

    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE payments_gateway_charge SET status = 'DECLINED' WHERE idempotency_key = %s",
            [f"order-{clean_set.declined}"],
        )
    assert audit_money() == 0
    assert sample_value(scrape(api_client), "oms_money_discrepancies", kind="kept_capture") == 0


def test_the_task_audits_the_orders_of_its_window_and_every_dead_letter(
    clean_set: CleanSet, api_client, settings
) -> None:
    from config.audit.tasks import audit_money
    from eventstore.deadletters import record_dead_letter

    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE payments_gateway_charge SET status = 'CAPTURED' WHERE idempotency_key = %s",
            [f"order-{clean_set.declined}"],
        )
        record_dead_letter(
            consumer="inventory",
            raw_body=b'{"type": "ReserveInventory"}',
            headers={},
            exchange="oms.commands",
            routing_key="inventory.ReserveInventory",
            error="boom",
            attempts=4,
        )
        cursor.execute("UPDATE event_dead_letter SET created_at = created_at - interval '2 days'")
    settings.MONEY_AUDIT_WINDOW = 3600.0

    assert audit_money() == 3
    time.sleep(0.05)
    settings.MONEY_AUDIT_WINDOW = 0.01  # the orders were placed before the window

    assert audit_money() == 1
    families = scrape(api_client)
    assert sample_value(families, "oms_money_discrepancies", kind="kept_capture") == 0
    assert sample_value(families, "oms_money_discrepancies", kind="dead_letter") == 1
