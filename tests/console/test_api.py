"""The console API under /api/admin/ against the real PostgreSQL: every endpoint, who may call it,
each action's success and refusal, and the event that names the admin."""

from __future__ import annotations

import uuid

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext

from eventstore.handling import handle
from eventstore.messages import Message
from eventstore.models import DeadLetter, OutboxMessage, StoredEvent
from eventstore.store import load_stream
from orders.handlers import load_order
from sagas.models import SagaInstance
from tests.security.conftest import assert_problem

from .conftest import dead_letter_of

pytestmark = pytest.mark.django_db

SAGAS = "/api/admin/sagas"


def _saga_events(order_id: str) -> list[str]:
    return [m.type for m in load_stream(f"saga-{order_id}")]


# --- who may call -----------------------------------------------------------------------------


def _every_endpoint(order_id: str, dead_letter_id: int) -> list[tuple[str, str]]:
    return [
        ("get", "/api/admin/summary"),
        ("get", SAGAS),
        ("get", f"/api/admin/orders/{order_id}"),
        ("post", f"{SAGAS}/{order_id}/retry-step"),
        ("post", f"{SAGAS}/{order_id}/force-compensation"),
        ("post", f"{SAGAS}/{order_id}/mark-failed"),
        ("post", f"/api/admin/dead-letters/{dead_letter_id}/replay"),
    ]


def test_anonymous_callers_get_401_and_customers_403_and_nothing_changes(
    api_client, alice_client, placed_order
) -> None:
    order_id = placed_order()
    dead = dead_letter_of(order_id)
    before = _saga_events(order_id)
    for method, path in _every_endpoint(order_id, dead.id):
        body = assert_problem(getattr(api_client, method)(path), 401)
        assert body["type"] == "urn:oms:problem:not_authenticated"
        assert_problem(getattr(alice_client, method)(path), 403)
    assert _saga_events(order_id) == before
    dead.refresh_from_db()
    assert dead.replayed_at is None


# --- sagas that need a look ---------------------------------------------------------------------


def test_the_list_shows_parked_stuck_and_lately_failed_sagas_with_why(
    admin_client, placed_order, parked_order, stuck_order, failed_order, completed_order
) -> None:
    parked, stuck, failed = parked_order(), stuck_order(), failed_order()
    fine, done = placed_order(), completed_order()
    page = admin_client.get(SAGAS)
    assert page.status_code == 200, page.content
    body = page.json()
    reasons = {row["order_id"]: row["reasons"] for row in body["results"]}
    assert reasons == {parked: ["attention"], stuck: ["stuck"], failed: ["failed"]}
    assert body["count"] == 3 and body["next"] is None and body["previous"] is None
    assert fine not in reasons and done not in reasons
    row = next(r for r in body["results"] if r["order_id"] == parked)
    assert (row["state"], row["needs_attention"], row["customer_id"]) == ("COMPENSATING", True, "alice")
    for which, expected in (("attention", parked), ("stuck", stuck), ("failed", failed)):
        only = admin_client.get(SAGAS, {"which": which}).json()
        assert [r["order_id"] for r in only["results"]] == [expected], which


def test_the_list_is_paged(admin_client, failed_order) -> None:
    made = {failed_order() for _ in range(3)}
    first = admin_client.get(SAGAS, {"which": "failed", "page_size": 2}).json()
    assert first["count"] == 3 and len(first["results"]) == 2 and first["previous"] is None
    second = admin_client.get(first["next"]).json()
    assert len(second["results"]) == 1 and second["next"] is None and second["previous"]
    assert {r["order_id"] for r in first["results"] + second["results"]} == made


@pytest.mark.parametrize(
    "query", [{"which": "everything"}, {"page": "0"}, {"page_size": "101"}, {"page": "x"}]
)
def test_bad_list_parameters_are_a_400_problem(admin_client, query) -> None:
    body = assert_problem(admin_client.get(SAGAS, query), 400)
    assert body["errors"][0]["pointer"] == "/" + next(iter(query))


# --- one order's page -----------------------------------------------------------------------------


def test_the_order_page_has_every_event_as_a_timeline_and_a_causation_tree(
    admin_client, completed_order, settings
) -> None:
    settings.TRACE_URL_TEMPLATE = "http://localhost:16686/trace/{trace_id}"
    # As if the request that placed the order carried a traceparent (the answers continue it).
    context = SpanContext(trace_id=int("ab" * 16, 16), span_id=0x1234, is_remote=True)
    with trace.use_span(NonRecordingSpan(context)):
        order_id = completed_order()
    trace_id = format(context.trace_id, "032x")
    response = admin_client.get(f"/api/admin/orders/{order_id}")
    assert response.status_code == 200, response.content
    page = response.json()
    assert page["order"]["status"] == "COMPLETED" and page["order"]["customer_id"] == "alice"
    assert page["saga"]["state"] == "COMPLETED"
    assert [t["to_state"] for t in page["saga"]["transitions"]][-1] == "COMPLETED"
    steps = [(a["step"], a["outcome"]) for a in page["saga"]["step_attempts"]]
    assert steps == [
        ("RESERVE_INVENTORY", "SUCCEEDED"),
        ("PROCESS_PAYMENT", "SUCCEEDED"),
        ("CONFIRM_INVENTORY", "SUCCEEDED"),
    ]

    stored = StoredEvent.objects.filter(aggregate_id__in=[order_id, f"saga-{order_id}"]).count()
    events = [m for m in page["timeline"] if m["kind"] == "event"]
    commands = [m["type"] for m in page["timeline"] if m["kind"] == "command"]
    assert len(events) == stored
    assert [e["position"] for e in events] == sorted(e["position"] for e in events)
    assert commands == ["ReserveInventory", "ProcessPayment", "ConfirmInventory"]
    assert page["timeline"][0]["type"] == "OrderCreated"

    # The tree: the order's creation caused the saga's start and its ReserveInventory.
    roots = page["causation_tree"]
    by_id = {}

    def walk(nodes, parent):
        for node in nodes:
            by_id[node["message_id"]] = (node, parent)
            walk(node["children"], node)

    walk(roots, None)
    reserve = next(n for n, _ in by_id.values() if n["type"] == "ReserveInventory")
    _, reserve_parent = by_id[reserve["message_id"]]
    assert reserve_parent is not None and reserve_parent["type"] == "OrderCreated"
    assert "PROCESS_PAYMENT" not in str(reserve)  # nodes stay small: the data is in the timeline
    for node, parent in by_id.values():
        if parent is not None:
            assert node["causation_id"] == parent["message_id"]
    assert len(by_id) == len(page["timeline"])

    assert page["trace_id"] == trace_id and page["trace_ids"] == [trace_id]
    assert page["trace_url"] == f"http://localhost:16686/trace/{trace_id}"
    sent = {row["message_id"] for row in page["outbox"]}
    assert reserve["message_id"] in sent
    assert page["dead_letters"] == []
    assert "tok_ok" not in response.content.decode()  # card tokens are masked


def _deliver(context: str, routing_key: str, order_id: str) -> None:
    """Hand the order's last outbox message of ``routing_key`` to ``context``, as the bus would."""
    row = OutboxMessage.objects.filter(routing_key=routing_key, body__correlation_id=order_id).latest("id")
    handle(context, Message.from_body(row.body, routing_key=row.routing_key, headers=row.headers))


def test_the_causation_tree_follows_commands_into_other_contexts_and_back(admin_client, placed_order) -> None:
    order_id = placed_order()
    _deliver("inventory", "inventory.ReserveInventory", order_id)
    _deliver("sagas", "inventory.InventoryReserved", order_id)
    page = admin_client.get(f"/api/admin/orders/{order_id}").json()
    assert len(page["causation_tree"]) == 1, [n["type"] for n in page["causation_tree"]]
    created = page["causation_tree"][0]
    assert created["type"] == "OrderCreated"
    reserve = next(n for n in created["children"] if n["type"] == "ReserveInventory")
    (reserved,) = reserve["children"]
    assert (reserved["type"], reserved["aggregate_id"]) == ("InventoryReserved", f"reservation-{order_id}")
    caused = sorted(n["type"] for n in reserved["children"])
    assert "ProcessPayment" in caused and "SagaTransitioned" in caused and "OrderStatusUpdated" in caused
    assert page["reservation"]["state"] == "HELD"
    assert [m["type"] for m in page["timeline"] if m["aggregate_id"] == f"reservation-{order_id}"] == [
        "ReserveInventory",
        "InventoryReserved",
    ]


def test_without_a_template_there_is_no_trace_url(admin_client, placed_order, settings) -> None:
    settings.TRACE_URL_TEMPLATE = ""
    page = admin_client.get(f"/api/admin/orders/{placed_order()}").json()
    assert page["trace_url"] is None


def test_an_unknown_order_is_a_404_problem(admin_client) -> None:
    assert_problem(admin_client.get(f"/api/admin/orders/{uuid.uuid4()}"), 404)
    assert_problem(admin_client.get("/api/admin/orders/not-a-uuid"), 404)


def test_the_order_page_shows_its_dead_letters_and_their_replay(admin_client, placed_order) -> None:
    order_id = placed_order()
    dead = dead_letter_of(order_id)
    assert admin_client.post(f"/api/admin/dead-letters/{dead.id}/replay").status_code == 200
    page = admin_client.get(f"/api/admin/orders/{order_id}").json()
    assert [(d["id"], d["replayed_by"]) for d in page["dead_letters"]] == [(dead.id, "admin")]
    replayed = [m for m in page["timeline"] if m["type"] == "DeadLetterReplayed"]
    assert replayed and replayed[0]["data"]["admin"] == "admin"
    assert any(row["replay_of"] == str(dead.id) for row in page["outbox"])


# --- the actions ----------------------------------------------------------------------------------


def test_retry_step_resends_the_command_and_records_the_admin(admin_client, placed_order) -> None:
    order_id = placed_order()
    response = admin_client.post(f"{SAGAS}/{order_id}/retry-step")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["action"], body["event"]["type"]) == ("retry_step", "SagaStepRetried")
    assert body["event"]["data"]["admin"] == "admin" and body["saga"]["attempts"] == 2
    stored = load_stream(f"saga-{order_id}")[-1]
    assert (stored.type, stored.data["admin"], stored.message_id) == (
        "SagaStepRetried",
        "admin",
        body["event"]["message_id"],
    )
    reserves = OutboxMessage.objects.filter(
        routing_key="inventory.ReserveInventory", body__correlation_id=order_id
    )
    assert reserves.count() == 2


def test_retry_step_on_a_completed_saga_is_refused_with_the_reason(admin_client, completed_order) -> None:
    order_id = completed_order()
    before = _saga_events(order_id)
    body = assert_problem(admin_client.post(f"{SAGAS}/{order_id}/retry-step"), 409)
    assert "COMPLETED saga has no step to retry" in body["detail"]
    assert body["type"] == "urn:oms:problem:intervention_refused" and body["action"] == "retry_step"
    assert _saga_events(order_id) == before


def test_retry_step_clears_a_parked_saga(admin_client, parked_order) -> None:
    order_id = parked_order()
    body = admin_client.post(f"{SAGAS}/{order_id}/retry-step").json()
    assert body["saga"]["needs_attention"] is False
    assert SagaInstance.objects.get(order_id=order_id).needs_attention is False


def test_force_compensation_fails_the_order_with_reason_admin(admin_client, captured_order) -> None:
    order_id = captured_order()
    response = admin_client.post(f"{SAGAS}/{order_id}/force-compensation", {}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["event"]["type"] == "SagaManuallyCompensated"
    assert body["event"]["data"] == {"order_id": order_id, "admin": "admin", "as_cancellation": False}
    saga = SagaInstance.objects.get(order_id=order_id)
    assert (saga.state, saga.outcome, saga.failure_reason) == ("COMPENSATING", "FAILED", "ADMIN")
    # The capture is refunded as part of the compensation.
    assert OutboxMessage.objects.filter(
        routing_key="payments.RefundPayment", body__correlation_id=order_id
    ).exists()


def test_force_compensation_of_a_completed_order_only_as_a_cancellation(
    admin_client, completed_order
) -> None:
    order_id = completed_order()
    body = assert_problem(admin_client.post(f"{SAGAS}/{order_id}/force-compensation"), 409)
    assert "only be compensated as a cancellation" in body["detail"]
    response = admin_client.post(
        f"{SAGAS}/{order_id}/force-compensation", {"as_cancellation": True}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["action"] == "force_cancellation"
    assert SagaInstance.objects.get(order_id=order_id).outcome == "CANCELLED"


def test_force_compensation_rejects_a_bad_body(admin_client, placed_order) -> None:
    order_id = placed_order()
    response = admin_client.post(
        f"{SAGAS}/{order_id}/force-compensation", {"as_cancellation": "perhaps"}, format="json"
    )
    assert assert_problem(response, 400)["errors"][0]["pointer"] == "/as_cancellation"


def test_force_compensation_of_a_failed_saga_is_refused(admin_client, failed_order) -> None:
    body = assert_problem(admin_client.post(f"{SAGAS}/{failed_order()}/force-compensation"), 409)
    assert "nothing left to compensate" in body["detail"]


def test_mark_failed_ends_the_saga_and_the_order(admin_client, placed_order) -> None:
    order_id = placed_order()
    response = admin_client.post(f"{SAGAS}/{order_id}/mark-failed")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["event"]["type"] == "SagaManuallyFailed" and body["event"]["data"]["admin"] == "admin"
    assert body["saga"]["state"] == "FAILED"
    order = load_order(order_id)
    assert (order.status, order.failure_reason) == ("FAILED", "ADMIN")


def test_mark_failed_is_refused_while_a_capture_is_kept(admin_client, captured_order) -> None:
    order_id = captured_order()
    body = assert_problem(admin_client.post(f"{SAGAS}/{order_id}/mark-failed"), 409)
    assert "captured and is not refunded" in body["detail"]
    assert "SagaManuallyFailed" not in _saga_events(order_id)


def test_actions_on_an_order_without_a_saga_are_a_404(admin_client, demo_users) -> None:
    for action in ("retry-step", "force-compensation", "mark-failed"):
        assert_problem(admin_client.post(f"{SAGAS}/{uuid.uuid4()}/{action}"), 404)


def test_replaying_a_dead_letter_records_an_event_naming_the_admin(admin_client, placed_order) -> None:
    order_id = placed_order()
    dead = dead_letter_of(order_id)
    response = admin_client.post(f"/api/admin/dead-letters/{dead.id}/replay")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["dead_letter_id"], body["replayed_by"]) == (dead.id, "admin")
    assert body["event"]["type"] == "DeadLetterReplayed" and body["event"]["data"]["admin"] == "admin"
    row = OutboxMessage.objects.get(id=body["outbox_id"])
    assert str(row.message_id) == str(dead.message_id) and row.routing_key == "inventory.ConfirmInventory"
    again = assert_problem(admin_client.post(f"/api/admin/dead-letters/{dead.id}/replay"), 409)
    assert "was replayed at" in again["detail"]
    assert OutboxMessage.objects.filter(message_id=dead.message_id).count() == 1
    last = DeadLetter.objects.order_by("-id").values_list("id", flat=True).first()
    assert_problem(admin_client.post(f"/api/admin/dead-letters/{(last or 0) + 1000}/replay"), 404)


# --- the front page -------------------------------------------------------------------------------


def test_the_summary_has_lag_breaker_dead_letters_and_sagas(
    admin_client, parked_order, failed_order, placed_order
) -> None:
    parked_order()
    failed_order()
    dead_letter_of(placed_order())
    response = admin_client.get("/api/admin/summary")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["sources"] == {
        "database": True,
        "projections": True,
        "breaker": True,
        "outbox": True,
        "sagas": True,
    }
    assert body["dead_letters"] == {"total": 1, "by_consumer": {"inventory": 1}}
    assert body["sagas"] == {"attention": 1, "stuck": 0, "failed": 1}
    assert {p["projection"] for p in body["projections"]} == {"orders", "payments"}
    assert all(p["events"] >= 0 for p in body["projections"])
    assert body["breaker"] == [{"gateway": "simulator", "state": "CLOSED"}]
    assert body["outbox_backlog"] == OutboxMessage.objects.filter(sent_at__isnull=True).count() > 0


def test_the_console_operations_are_documented_under_the_admin_tag(api_client) -> None:
    schema = api_client.get("/api/schema/?format=json").json()
    paths = {p: ops for p, ops in schema["paths"].items() if p.startswith("/api/admin/")}
    assert set(paths) == {
        "/api/admin/summary",
        "/api/admin/sagas",
        "/api/admin/sagas/{order_id}/retry-step",
        "/api/admin/sagas/{order_id}/force-compensation",
        "/api/admin/sagas/{order_id}/mark-failed",
        "/api/admin/orders/{order_id}",
        "/api/admin/dead-letters/{dead_letter_id}/replay",
    }
    for path, operations in paths.items():
        for method, operation in operations.items():
            assert operation["tags"] == ["admin"], (path, method)
            assert operation.get("summary"), (path, method)
            assert {"401", "403"} <= set(operation["responses"]), (path, method)
            if method == "post":
                assert "409" in operation["responses"], path
