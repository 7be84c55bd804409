"""GET /api/orders/analytics: figures equal the sums over the orders' own events."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from eventstore.models import StoredEvent
from queries.analytics import refresh_views

from .conftest import created, deliver

pytestmark = pytest.mark.django_db(transaction=True)


def _expected_from_events() -> dict:
    """Status counts, revenue and product totals recomputed from the event store alone."""
    status: dict[str, str] = {}
    created_data: dict[str, dict] = {}
    for row in StoredEvent.objects.filter(aggregate_type="order").order_by("aggregate_id", "version"):
        if row.event_type == "OrderCreated":
            created_data[row.aggregate_id] = row.event_data
            status[row.aggregate_id] = "PENDING"
        elif row.event_type == "OrderStatusUpdated":
            status[row.aggregate_id] = row.event_data["status"]
        else:
            status[row.aggregate_id] = {
                "OrderCompleted": "COMPLETED",
                "OrderCancelled": "CANCELLED",
                "OrderFailed": "FAILED",
            }[row.event_type]
    by_status: dict[str, int] = defaultdict(int)
    for value in status.values():
        by_status[value] += 1
    completed = [created_data[o] for o, s in status.items() if s == "COMPLETED"]
    revenue = sum((Decimal(c["total_amount"]) for c in completed), Decimal("0"))
    quantities: dict[str, int] = defaultdict(int)
    for order in completed:
        for item in order["items"]:
            quantities[item["product_id"]] += item["quantity"]
    payments = {}
    for row in StoredEvent.objects.filter(event_type__in=("PaymentProcessed", "PaymentFailed")).order_by(
        "id"
    ):
        order_id = row.event_data["order_id"]
        if payments.get(order_id) != "PaymentProcessed":
            payments[order_id] = row.event_type
    captured = sum(1 for v in payments.values() if v == "PaymentProcessed")
    return {
        "by_status": dict(by_status),
        "revenue": revenue,
        "count": len(status),
        "completed": len(completed),
        "quantities": dict(quantities),
        "success_rate": round(captured / len(payments), 4),
    }


def test_analytics_equal_the_sums_over_the_orders_events(admin_client, place_and_run) -> None:
    place_and_run("alice", [("SKU-W", 2), ("SKU-G", 1)])
    place_and_run("alice", [("SKU-W", 1)])
    place_and_run("bob", [("SKU-G", 4)])
    place_and_run("bob", [("SKU-G", 1)], token="tok_declined")
    place_and_run("bob", [("SKU-S", 2)])  # out of stock: no payment at all
    refresh_views()

    body = admin_client.get("/api/orders/analytics").json()
    expected = _expected_from_events()

    assert {k: v for k, v in body["orders_by_status"].items() if v} == expected["by_status"]
    assert expected["by_status"] == {"COMPLETED": 3, "FAILED": 2}
    assert Decimal(body["revenue"]) == expected["revenue"] == Decimal("52.50")
    assert body["average_order_value"] == f"{expected['revenue'] / expected['completed']:.2f}" == "17.50"
    assert {p["product_id"]: p["quantity"] for p in body["top_products"]} == expected["quantities"]
    assert body["top_products"][0] == {
        "product_id": "SKU-G",
        "product_name": "Green Gadget",
        "quantity": 5,
        "revenue": "15.00",
    }
    assert body["payment_success_rate"] == expected["success_rate"] == 0.75
    today = timezone.now().date()
    assert len(body["per_day"]) == 30 and body["per_day"][-1]["date"] == today.isoformat()
    assert body["per_day"][-1]["orders"] == expected["count"]
    assert body["per_day"][-1]["revenue"] == "52.50"
    assert sum(d["orders"] for d in body["per_day"]) == expected["count"]
    assert (body["from"], body["to"]) == ((today - timedelta(days=29)).isoformat(), today.isoformat())


def test_range_and_as_of(admin_client) -> None:
    deliver(created("alice", [("P-1", "Lamp", 1, "10.00")], at=timezone.now() - timedelta(days=40)))
    refreshed = refresh_views() or timezone.now()
    recent = admin_client.get("/api/orders/analytics").json()
    assert sum(recent["orders_by_status"].values()) == 0
    old_day = (timezone.now() - timedelta(days=40)).date().isoformat()
    window = admin_client.get(f"/api/orders/analytics?from={old_day}&to={old_day}").json()
    assert window["orders_by_status"]["PENDING"] == 1 and window["per_day"] == [
        {"date": old_day, "orders": 1, "revenue": "0.00"}
    ]
    assert window["payment_success_rate"] is None
    if connection.vendor == "postgresql":
        assert window["as_of"] == refreshed.isoformat().replace("+00:00", "Z")
        # the views answer as of their last refresh, not as of the latest event
        deliver(created("bob", [("P-1", "Lamp", 1, "10.00")], at=timezone.now() - timedelta(days=40)))
        again = admin_client.get(f"/api/orders/analytics?from={old_day}&to={old_day}").json()
        assert again["orders_by_status"]["PENDING"] == 1
        refresh_views()
        fresh = admin_client.get(f"/api/orders/analytics?from={old_day}&to={old_day}").json()
        assert fresh["orders_by_status"]["PENDING"] == 2 and fresh["as_of"] > window["as_of"]


def test_analytics_is_admin_only_and_validates_dates(admin_client, alice_client) -> None:
    assert alice_client.get("/api/orders/analytics").status_code == 403
    for query in (
        "from=2026-02-30",
        "to=tomorrow",
        "from=2026-03-02&to=2026-03-01",
        "from=1900-01-01&to=2026-01-01",
    ):
        response = admin_client.get(f"/api/orders/analytics?{query}")
        assert response.status_code == 400, (query, response.content)
        assert response["Content-Type"] == "application/problem+json"
    assert admin_client.get("/api/orders/analytics?from=2026-01-01&to=2026-01-31").status_code == 200


def test_the_views_are_refreshed_once_a_minute_and_a_late_refresh_is_dropped() -> None:
    """A refresh recomputes every stored order: not every few seconds (issue 11, step 5)."""
    from django.conf import settings

    entry = settings.CELERY_BEAT_SCHEDULE["queries-refresh-analytics"]
    assert entry["task"] == "queries.tasks.refresh_analytics"
    assert entry["schedule"] == settings.ANALYTICS_REFRESH_SECONDS == 60.0
    assert 0 < entry["options"]["expires"] < entry["schedule"]
