"""The saga console in the Django admin: the read-only page and the audited actions."""

from __future__ import annotations

import pytest
from django.test import Client

from eventstore.models import OutboxMessage
from eventstore.store import load_stream
from orders.handlers import load_order
from sagas.models import SagaInstance

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/sagas/sagainstance/"


@pytest.fixture
def operator(demo_users) -> Client:
    client = Client()
    client.force_login(demo_users["admin"])
    return client


def _act(client: Client, action: str, order_id: str) -> None:
    response = client.post(CHANGELIST, {"action": action, "_selected_action": [order_id]})
    assert response.status_code == 302


def test_the_saga_page_shows_transitions_attempts_and_the_orders_events(operator, placed_order) -> None:
    order_id = placed_order()
    assert operator.get(CHANGELIST).status_code == 200
    page = operator.get(f"{CHANGELIST}{order_id}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "OrderCreated" in text and "SagaStarted" in text and "ReserveInventory" in text
    assert "tok_ok" not in text


def test_retry_step_resends_the_command_and_names_the_admin(operator, placed_order) -> None:
    order_id = placed_order()
    _act(operator, "retry_current_step", order_id)
    reserves = OutboxMessage.objects.filter(
        routing_key="inventory.ReserveInventory", body__correlation_id=order_id
    )
    assert reserves.count() == 2
    retried = [m for m in load_stream(f"saga-{order_id}") if m.type == "SagaStepRetried"]
    assert retried[0].data["admin"] == "admin" and retried[0].data["step"] == "RESERVE_INVENTORY"


def test_force_compensation_and_mark_failed_are_recorded(operator, placed_order) -> None:
    order_id = placed_order()
    _act(operator, "force_cancellation", order_id)
    saga = SagaInstance.objects.get(order_id=order_id)
    assert (saga.state, saga.outcome) == ("COMPENSATING", "CANCELLED")
    _act(operator, "mark_failed", order_id)
    types = [m.type for m in load_stream(f"saga-{order_id}")]
    assert "SagaManuallyCompensated" in types and "SagaManuallyFailed" in types
    assert SagaInstance.objects.get(order_id=order_id).state == "FAILED"
    assert load_order(order_id).status == "CANCELLED"


def test_force_compensation_as_failure_ends_the_order_failed_admin(operator, placed_order) -> None:
    order_id = placed_order()
    _act(operator, "force_compensation", order_id)
    _act(operator, "mark_failed", order_id)
    order = load_order(order_id)
    assert (order.status, order.failure_reason) == ("FAILED", "ADMIN")
    _act(operator, "mark_failed", order_id)  # refused with a message, nothing changes
    assert [m.type for m in load_stream(f"saga-{order_id}")].count("SagaManuallyFailed") == 1
