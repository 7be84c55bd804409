"""The saga console in the Django admin: the read-only page and the audited actions."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

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


# --- the read-only page, its confirmed buttons, the list and the Orders entry ------------------


def _intervene_url(order_id: str, action: str) -> str:
    return f"{CHANGELIST}{order_id}/intervene/{action}/"


def test_the_saga_page_has_no_save_button_but_the_intervention_buttons(operator, placed_order) -> None:
    order_id = placed_order()
    text = operator.get(f"{CHANGELIST}{order_id}/change/").content.decode()
    assert 'name="_save"' not in text and 'name="_continue"' not in text
    assert "Save" not in text
    for action in ("retry_step", "force_compensation", "force_cancellation", "mark_failed"):
        assert _intervene_url(order_id, action) in text
    # A forged save changes nothing: nobody may change a saga through its form.
    before = SagaInstance.objects.get(order_id=order_id)
    response = operator.post(f"{CHANGELIST}{order_id}/change/", {"state": "COMPLETED"})
    assert response.status_code == 403
    assert SagaInstance.objects.get(order_id=order_id).state == before.state == "STARTED"


def test_a_button_asks_for_confirmation_then_posts_with_the_csrf_token(demo_users, placed_order) -> None:
    order_id = placed_order()
    client = Client(enforce_csrf_checks=True)
    client.force_login(demo_users["admin"])
    confirm = client.get(_intervene_url(order_id, "retry_step"))
    assert confirm.status_code == 200
    text = confirm.content.decode()
    assert "Retry the current step" in text and order_id in text and 'method="post"' in text
    assert "SagaStepRetried" not in [m.type for m in load_stream(f"saga-{order_id}")], "a GET does nothing"
    assert client.post(_intervene_url(order_id, "retry_step")).status_code == 403, "no CSRF token"
    token = confirm.context["csrf_token"]
    done = client.post(_intervene_url(order_id, "retry_step"), {"csrfmiddlewaretoken": str(token)})
    assert done.status_code == 302 and done["Location"].endswith(f"{CHANGELIST}{order_id}/change/")
    retried = [m for m in load_stream(f"saga-{order_id}") if m.type == "SagaStepRetried"]
    assert len(retried) == 1 and retried[0].data["admin"] == "admin"
    page = client.get(done["Location"]).content.decode()
    assert "recorded SagaStepRetried" in page


def test_a_refused_button_says_why_and_changes_nothing(operator, placed_order) -> None:
    from eventstore.handling import handle

    from .conftest import answer

    order_id = placed_order()
    handle("sagas", answer("InventoryReservationFailed", order_id, reason="OUT_OF_STOCK", items=[]))
    before = [m.type for m in load_stream(f"saga-{order_id}")]
    done = operator.post(_intervene_url(order_id, "force_compensation"), follow=True)
    assert "Refused: a FAILED saga has nothing left to compensate." in done.content.decode()
    assert [m.type for m in load_stream(f"saga-{order_id}")] == before


def test_a_viewer_sees_the_page_without_buttons_and_cannot_intervene(placed_order) -> None:
    from orders.models import User

    order_id = placed_order()
    viewer = User.objects.create_user("saga-page-viewer", password="pw-123456789", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_sagainstance"))
    client = Client()
    client.force_login(viewer)
    text = client.get(f"{CHANGELIST}{order_id}/change/").content.decode()
    assert order_id in text and "/intervene/" not in text
    assert client.get(_intervene_url(order_id, "mark_failed")).status_code == 403
    assert client.post(_intervene_url(order_id, "mark_failed")).status_code == 403
    assert SagaInstance.objects.get(order_id=order_id).state == "STARTED"


def test_an_unknown_action_or_saga_is_a_404(operator, placed_order) -> None:
    order_id = placed_order()
    assert operator.get(_intervene_url(order_id, "delete_everything")).status_code == 404
    assert operator.get(_intervene_url(str(uuid.uuid4()), "retry_step")).status_code == 404


def test_the_saga_list_has_few_columns_to_fit_1280_px(operator, placed_order) -> None:
    from django.contrib.admin.sites import site

    placed_order()
    assert len(site._registry[SagaInstance].list_display) <= 5
    text = operator.get(CHANGELIST).content.decode()
    assert "column-deadline" not in text and "column-order_id" in text


def test_the_admin_has_an_orders_entry_linking_each_order_to_its_saga(operator, placed_order) -> None:
    from queries.models import OrderReadModel
    from queries.projections import active_generation

    order_id = placed_order()
    index = operator.get("/admin/").content.decode()
    assert ">Orders<" in index and "/admin/queries/order/" in index

    OrderReadModel.objects.create(
        generation=active_generation("orders"),
        order_id=order_id,
        customer_id="alice",
        status="PENDING",
        total_amount="28.00",
        created_at=timezone.now(),
        updated_at=timezone.now(),
        version=1,
    )
    listing = operator.get("/admin/queries/order/").content.decode()
    assert order_id in listing and f"{CHANGELIST}{order_id}/change/" in listing
