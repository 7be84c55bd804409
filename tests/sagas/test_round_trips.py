"""SQL statements per order on the hot paths (issue 7), and the behaviour the savings must keep.

The bounds are what the code reaches today on PostgreSQL; a change that adds a round trip to
placing an order or to a saga step fails here. Each count includes the SAVEPOINT/RELEASE of the
outermost ``atomic`` (the test's own transaction wraps it), which stand for BEGIN/COMMIT.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from eventstore.handling import handle
from eventstore.store import load_stream
from orders import public as orders_public
from orders.handlers import RequestedLine, load_order, place_order
from sagas import handlers as saga_handlers
from sagas import public as sagas_public
from sagas.handlers import sweep_timeouts
from sagas.models import SagaStepAttempt

from .conftest import answer

pytestmark = pytest.mark.django_db

PLACE_ORDER_STATEMENTS = 7
STEP_STATEMENTS = {"InventoryReserved": 9, "PaymentProcessed": 7, "InventoryConfirmed": 9}

ORDER_BODY = {
    "items": [{"product_id": "SKU-A", "quantity": 2}, {"product_id": "SKU-B", "quantity": 1}],
    "payment": {"method": "card", "token": "tok_ok"},
}


def _statements(action: Callable[[], Any]) -> tuple[Any, list[str]]:
    with CaptureQueriesContext(connection) as captured:
        result = action()
    return result, [query["sql"] for query in captured.captured_queries]


def _attempts(order_id: str, step: str) -> list[int]:
    return list(
        SagaStepAttempt.objects.filter(saga_id=order_id, step=step)
        .order_by("id")
        .values_list("attempt", flat=True)
    )


def test_placing_an_order_and_each_happy_step_stay_within_their_statement_counts(
    products, alice_client
) -> None:
    assert connection.vendor == "postgresql"
    alice_client.post("/api/orders", ORDER_BODY)  # warm caches (content types, catalogue) once
    response, statements = _statements(lambda: alice_client.post("/api/orders", ORDER_BODY))
    assert response.status_code == 202, response.content
    assert len(statements) <= PLACE_ORDER_STATEMENTS, "\n".join(statements)
    order_id = response.json()["order_id"]

    steps = [
        lambda: answer("InventoryReserved", order_id, items=[], expires_at="2099-01-01T00:00:00Z"),
        lambda: answer("PaymentProcessed", order_id, payment_id="p", amount="28.00", attempts=1),
        lambda: answer("InventoryConfirmed", order_id, items=[]),
    ]
    for step in steps:
        message = step()  # answers the command the previous step sent
        handled, statements = _statements(partial(handle, "sagas", message))
        assert handled
        assert len(statements) <= STEP_STATEMENTS[message.type], f"{message.type}:\n" + "\n".join(statements)
    assert load_order(order_id).status == "COMPLETED"


def test_the_placed_order_returned_is_the_one_its_stream_tells(products) -> None:
    placed = place_order(
        customer_id="alice",
        lines=[RequestedLine("SKU-A", 2), RequestedLine("SKU-B", 1)],
        payment={"method": "card", "token": "tok_ok"},
    )
    assert placed == load_order(placed.order_id)
    assert (placed.status, placed.version, placed.total_amount) == ("PENDING", 1, "28.00")


def test_order_changes_of_one_step_are_decided_in_turn_and_appended_together(placed_order) -> None:
    order_id = placed_order()
    handle("sagas", answer("InventoryReserved", order_id, items=[], expires_at="2099-01-01T00:00:00Z"))
    events = load_stream(order_id)
    assert [(m.type, m.version) for m in events] == [
        ("OrderCreated", 1),
        ("OrderStatusUpdated", 2),
        ("OrderStatusUpdated", 3),
    ]
    assert [(m.data["previous_status"], m.data["status"]) for m in events[1:]] == [
        ("PENDING", "INVENTORY_RESERVED"),
        ("INVENTORY_RESERVED", "PAYMENT_PROCESSING"),
    ]
    assert {m.causation_id for m in events[1:]} == {events[1].causation_id}


def test_change_order_skips_what_an_earlier_change_already_did(placed_order) -> None:
    order_id = placed_order()
    sagas_public.request_cancellation(order_id=order_id, by="alice", reason="x")  # the saga now compensates

    class Change:
        def __init__(self, action: str, status: str = "") -> None:
            self.action, self.status, self.reason, self.by = action, status, "", ""

    with transaction.atomic():
        orders_public.change_order(
            order_id=order_id,
            changes=[
                Change("status", "PAYMENT_PROCESSING"),
                Change("status", "INVENTORY_RESERVED"),
                Change("complete"),
            ],
            cause_id="c",
        )
    assert [m.type for m in load_stream(order_id)] == ["OrderCreated", "OrderStatusUpdated", "OrderCompleted"]
    with pytest.raises(ValueError, match="unknown order change"), transaction.atomic():
        orders_public.change_order(order_id=order_id, changes=[Change("ship")], cause_id="c")


def test_step_attempts_are_numbered_within_their_step(placed_order, settings) -> None:
    settings.SAGA_STEP_TIMEOUT = 1
    settings.SAGA_STEP_RETRIES = 2
    order_id = placed_order()
    with transaction.atomic():
        saga_handlers.decide(
            order_id, lambda saga, now: saga.retry_step(admin="ops", now=now, timing=saga_handlers.timing())
        )
    assert _attempts(order_id, "RESERVE_INVENTORY") == [1, 2]
    sagas_public.request_cancellation(order_id=order_id, by="alice", reason="x")
    now = timezone.now()
    for _ in range(2):
        now += timedelta(hours=1)
        assert sweep_timeouts(now=now) == 1
    assert _attempts(order_id, "RELEASE_INVENTORY") == [1, 2, 3]
    assert _attempts(order_id, "RESERVE_INVENTORY") == [1, 2]
    handle("sagas", answer("InventoryReleased", order_id, items=[], reason="CANCELLED", restocked=False))
    # A reservation heard after the saga ended is undone: one more, untracked, release.
    handle("sagas", answer("InventoryReserved", order_id, items=[], expires_at="2099-01-01T00:00:00Z"))
    assert _attempts(order_id, "RELEASE_INVENTORY") == [1, 2, 3, 4]
    late = SagaStepAttempt.objects.filter(saga_id=order_id, step="RELEASE_INVENTORY").order_by("id").last()
    assert late is not None and late.error == "late effect undone after the saga ended"
