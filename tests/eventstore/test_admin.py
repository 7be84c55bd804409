"""The event-store admin: read-only lists, and the dead-letter replay action."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from eventstore.models import DeadLetter, OutboxMessage
from tests.fixtures.deadletters import probe_dead_letter

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_for_ops() -> Client:
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw-123456789")
    client = Client()
    client.force_login(user)
    return client


def _dead_letter() -> DeadLetter:
    return probe_dead_letter(
        headers={
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "x-oms-retries": "3",
        }
    )


def test_the_replay_action_requeues_selected_dead_letters_through_the_outbox(
    admin_client_for_ops: Client,
) -> None:
    dead = _dead_letter()

    response = admin_client_for_ops.post(
        "/admin/eventstore/deadletter/",
        {"action": "replay_selected", "_selected_action": [dead.id]},
    )

    assert response.status_code == 302
    dead.refresh_from_db()
    assert dead.replayed_by == "ops" and dead.replayed_at is not None
    row = OutboxMessage.objects.get(message_id=dead.message_id)
    assert (row.exchange, row.routing_key, row.body) == ("oms.commands", "probe.Poison", dead.body)
    assert row.headers["traceparent"].startswith("00-0af7")
    assert "x-oms-retries" not in row.headers  # a replay starts its retries afresh


def test_the_admin_lists_are_read_only(admin_client_for_ops: Client) -> None:
    dead = _dead_letter()
    for model in ("storedevent", "outboxmessage", "inboxmessage", "deadletter"):
        assert admin_client_for_ops.get(f"/admin/eventstore/{model}/").status_code == 200
        assert admin_client_for_ops.get(f"/admin/eventstore/{model}/add/").status_code == 403
    assert admin_client_for_ops.post(f"/admin/eventstore/deadletter/{dead.id}/delete/").status_code == 403
