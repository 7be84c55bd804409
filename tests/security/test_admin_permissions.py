"""Admin actions check permissions: a staff user who may only look neither sees nor runs them.

Saga interventions need ``sagas.change_sagainstance``; replaying dead letters needs
``eventstore.change_deadletter``. A staff user with only the view permission gets the lists
without the actions, and a forged POST of an action changes nothing.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from eventstore.models import OutboxMessage
from eventstore.store import load_stream
from orders.models import User
from tests.fixtures.deadletters import probe_dead_letter

pytestmark = pytest.mark.django_db

SAGAS = "/admin/sagas/sagainstance/"
DEAD_LETTERS = "/admin/eventstore/deadletter/"
SAGA_ACTIONS = ("retry_current_step", "force_compensation", "force_cancellation", "mark_failed")


def staff_client(username: str, *permissions: str) -> Client:
    """A logged-in staff user (not a superuser) holding exactly ``permissions`` (app.codename)."""
    user = User.objects.create_user(username, password="pw-123456789", is_staff=True)
    for permission in permissions:
        app_label, codename = permission.split(".")
        granted = Permission.objects.get(content_type__app_label=app_label, codename=codename)
        user.user_permissions.add(granted)
    client = Client()
    client.force_login(user)
    return client


def _saga_events(order_id: str) -> list[str]:
    return [m.type for m in load_stream(f"saga-{order_id}")]


def test_every_admin_action_declares_the_permissions_it_needs():
    from django.contrib.admin.sites import site

    missing = []
    for model_admin in site._registry.values():
        for name in model_admin.actions or ():
            action = name if callable(name) else getattr(model_admin, name, None) or site.get_action(name)
            if not getattr(action, "allowed_permissions", None):
                missing.append(f"{type(model_admin).__name__}.{getattr(action, '__name__', name)}")
    assert not missing, f"admin actions without allowed_permissions: {missing}"
    # the site-wide actions too (Django's delete_selected declares "delete")
    for name, action in site.actions:
        assert getattr(action, "allowed_permissions", None), name


def test_a_viewer_of_sagas_neither_sees_nor_runs_the_interventions(place_order, alice_client):
    order_id = place_order(alice_client)
    viewer = staff_client("saga-viewer", "sagas.view_sagainstance")
    page = viewer.get(SAGAS)
    assert page.status_code == 200
    assert order_id in page.content.decode()
    for action in SAGA_ACTIONS:
        assert action not in page.content.decode()
    before = _saga_events(order_id)
    for action in SAGA_ACTIONS:
        viewer.post(SAGAS, {"action": action, "_selected_action": [order_id], "index": "0"})
    assert _saga_events(order_id) == before


def test_with_the_change_permission_the_interventions_run(place_order, alice_client):
    order_id = place_order(alice_client)
    operator = staff_client("saga-operator", "sagas.view_sagainstance", "sagas.change_sagainstance")
    page = operator.get(SAGAS).content.decode()
    for action in SAGA_ACTIONS:
        assert action in page
    response = operator.post(SAGAS, {"action": "retry_current_step", "_selected_action": [order_id]})
    assert response.status_code == 302
    assert "SagaStepRetried" in _saga_events(order_id)


def test_a_viewer_of_dead_letters_cannot_replay_them():
    dead = probe_dead_letter()
    viewer = staff_client("dl-viewer", "eventstore.view_deadletter")
    page = viewer.get(DEAD_LETTERS)
    assert page.status_code == 200
    assert "replay_selected" not in page.content.decode()
    viewer.post(DEAD_LETTERS, {"action": "replay_selected", "_selected_action": [dead.id], "index": "0"})
    dead.refresh_from_db()
    assert dead.replayed_at is None
    assert not OutboxMessage.objects.filter(message_id=dead.message_id).exists()


def test_with_the_change_permission_dead_letters_are_replayed():
    dead = probe_dead_letter()
    operator = staff_client("dl-operator", "eventstore.view_deadletter", "eventstore.change_deadletter")
    assert "replay_selected" in operator.get(DEAD_LETTERS).content.decode()
    response = operator.post(DEAD_LETTERS, {"action": "replay_selected", "_selected_action": [dead.id]})
    assert response.status_code == 302
    dead.refresh_from_db()
    assert dead.replayed_by == "dl-operator" and dead.replayed_at is not None
