"""``rebuild_projections``: a fresh replay, built aside and swapped in, equals the live model."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command
from django.db import models
from django.utils import timezone

from eventstore.bus import dispatch_due, drain
from eventstore.models import OutboxMessage, StreamCursor
from eventstore.store import load_stream
from orders.handlers import load_order
from payments.public import payment_status
from queries.models import OrderItemReadModel, OrderReadModel, PaymentReadModel
from queries.projections import active_generation
from queries.replay import rebuild
from sagas.handlers import sweep_timeouts

pytestmark = pytest.mark.django_db(transaction=True)


def _fields(model: type[models.Model], *skipped: str) -> list[str]:
    """Every stored field of a read model but its row id and the ones named."""
    return [f.attname for f in model._meta.concrete_fields if not f.primary_key and f.name not in skipped]


def snapshot() -> dict:
    """The live read models, every field but the row ids and the generation."""
    order_fields = _fields(OrderReadModel, "generation", "order_id")
    item_fields = _fields(OrderItemReadModel, "order")
    payment_fields = _fields(PaymentReadModel, "generation", "order_id")
    orders = OrderReadModel.objects.filter(generation=active_generation("orders")).prefetch_related("items")
    payments = PaymentReadModel.objects.filter(generation=active_generation("payments"))
    return {
        "orders": {
            str(o.order_id): {
                **{name: getattr(o, name) for name in order_fields},
                "items": sorted(tuple(getattr(i, name) for name in item_fields) for i in o.items.all()),
            }
            for o in orders
        },
        "payments": {str(p.order_id): {name: getattr(p, name) for name in payment_fields} for p in payments},
    }


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def order_truth(order_id: str, search_text: str) -> dict[str, Any]:
    """What the read model must hold for an order, from the command side (its event stream)."""
    order = load_order(order_id)
    return {
        "customer_id": order.customer_id,
        "status": order.status,
        "total_amount": Decimal(order.total_amount),
        "failure_reason": order.failure_reason,
        "created_at": _moment(order.created_at),
        "updated_at": _moment(order.updated_at),
        "version": order.version,
        # product names, order id and customer id (their layout is the projection's business)
        "search_text": search_text
        if all(
            word in search_text
            for word in [*(i["product_name"] for i in order.items), order_id, order.customer_id]
        )
        else f"<missing words of {order_id}>",
        "items": sorted(
            (i["product_id"], i["product_name"], int(i["quantity"]), Decimal(i["price"])) for i in order.items
        ),
    }


def payment_truth(order_id: str) -> dict[str, Any] | None:
    """The payment read model of an order from its payment stream: a capture is final."""
    events = [
        e for e in load_stream(f"payment-{order_id}") if e.type in ("PaymentProcessed", "PaymentFailed")
    ]
    if not events:
        return None
    captures = [e for e in events if e.type == "PaymentProcessed"]
    if captures:
        return {"outcome": "CAPTURED", "updated_at": _moment(captures[0].occurred_at)}
    return {"outcome": "FAILED", "updated_at": _moment(events[-1].occurred_at)}


def assert_equals_the_command_side(model: dict) -> None:
    """Every field of every order and payment row is what the event streams say."""
    for order_id, row in model["orders"].items():
        assert row == order_truth(order_id, row["search_text"]), order_id
    payments = {o: payment_truth(o) for o in model["orders"]}
    assert model["payments"] == {o: p for o, p in payments.items() if p is not None}


def run_bus_until(condition: Callable[[], bool], *, limit: int = 100) -> None:
    """Dispatch outbox rows one at a time until ``condition`` holds (a saga stopped half-way)."""
    for _ in range(limit):
        if condition():
            return
        assert dispatch_due(limit=1), (
            "the bus ran dry before the condition held",
            list(OutboxMessage.objects.filter(sent_at__isnull=True).values_list("routing_key", "last_error")),
        )
    raise AssertionError("condition never held")


def test_rebuild_equals_live_over_every_outcome(place_and_run, alice_client, admin_client, settings) -> None:
    settings.PAYMENT_BREAKER_PREFIX = f"test:rebuild:{uuid.uuid4().hex}"  # a breaker of its own
    settings.PAYMENT_RETRY_BACKOFF = 0.01
    expected: dict[str, tuple[str, str | None]] = {}

    # completed, completed on a retried charge, out of stock, declined, gateway unavailable
    completed = place_and_run("alice", [("SKU-W", 2), ("SKU-G", 1)])
    expected[completed] = ("COMPLETED", None)
    expected[place_and_run("bob", [("SKU-G", 3)], token="tok_flaky")] = ("COMPLETED", None)
    expected[place_and_run("bob", [("SKU-S", 5)])] = ("FAILED", "OUT_OF_STOCK")
    expected[place_and_run("bob", [("SKU-G", 1)], token="tok_declined")] = ("FAILED", "PAYMENT_DECLINED")
    expected[place_and_run("alice", [("SKU-W", 1)], token="tok_gateway_down")] = (
        "FAILED",
        "PAYMENT_UNAVAILABLE",
    )
    # (those failed calls opened the breaker: the next orders get a breaker of their own)
    settings.PAYMENT_BREAKER_PREFIX = f"test:rebuild:{uuid.uuid4().hex}"
    # cancelled by its owner before its saga ran
    early = place_and_run("alice", [("SKU-G", 2)], run=False)
    assert alice_client.delete(f"/api/orders/{early}").status_code == 202
    drain()
    expected[early] = ("CANCELLED", None)
    # cancelled once the payment was captured, before completion: refunded
    captured = place_and_run("alice", [("SKU-W", 1), ("SKU-S", 1)], run=False)
    run_bus_until(lambda: (payment_status(captured) or {}).get("captures") == 1)
    assert load_order(captured).status not in ("COMPLETED", "CANCELLED", "FAILED")
    assert alice_client.delete(f"/api/orders/{captured}").status_code == 202
    drain()
    expected[captured] = ("CANCELLED", None)
    # cancelled after completion: refunded and restocked
    late = place_and_run("alice", [("SKU-G", 4)])
    assert load_order(late).status == "COMPLETED"
    assert alice_client.delete(f"/api/orders/{late}").status_code == 202
    drain()
    expected[late] = ("CANCELLED", None)
    # failed by an admin (PUT status FAILED)
    forced = place_and_run("alice", [("SKU-W", 3)], run=False)
    response = admin_client.put(f"/api/orders/{forced}/status", {"status": "FAILED", "reason": "fraud"})
    assert response.status_code == 202, response.content
    drain()
    expected[forced] = ("FAILED", "ADMIN")
    # timed out: its reservation command is lost, the sweep runs at the saga's deadline (its clock
    # driven: no waiting for SAGA_TIMEOUT)
    lost = place_and_run("bob", [("SKU-G", 1)], run=False)
    command = OutboxMessage.objects.filter(
        routing_key="inventory.ReserveInventory", body__correlation_id=lost, sent_at__isnull=True
    )
    assert command.update(sent_at=timezone.now()) == 1
    deadline = _moment(admin_client.get(f"/api/orders/{lost}").json()["saga"]["deadline"])
    assert sweep_timeouts(now=deadline) == 1
    drain()
    expected[lost] = ("FAILED", "TIMEOUT")

    live = snapshot()
    assert {o: (row["status"], row["failure_reason"]) for o, row in live["orders"].items()} == expected
    for refunded in (captured, late):
        payment = payment_status(refunded)
        assert payment is not None and payment["refunded_amount"] == payment["amount"] != "0.00"
    # the live model holds, field by field, what the command side says
    assert_equals_the_command_side(live)
    assert len(live["payments"]) == 6
    before = active_generation("orders")

    out, err = io.StringIO(), io.StringIO()
    call_command("rebuild_projections", stdout=out, stderr=err)

    assert snapshot() == live
    assert active_generation("orders") == before + 1
    assert "orders: rebuilt, 10 rows" in out.getvalue() and "payments: rebuilt, 6 rows" in out.getvalue()
    assert "orders [" in err.getvalue() and "events" in err.getvalue()  # the progress bar
    # the old generation is gone, rows and cursors
    assert not OrderReadModel.objects.filter(generation=before).exists()
    assert not StreamCursor.objects.filter(consumer=f"queries.orders.g{before}").exists()

    # the live projector now writes the new generation
    later = place_and_run("alice", [("SKU-W", 1)])
    assert snapshot()["orders"][later]["status"] == "COMPLETED"
    call_command("rebuild_projections", "--projection", "orders", stdout=io.StringIO(), stderr=io.StringIO())
    assert active_generation("orders") == before + 2


def test_events_during_a_rebuild_are_not_lost_and_the_api_keeps_serving(place_and_run, admin_client) -> None:
    place_and_run("alice", [("SKU-W", 1)])
    during: list[str] = []

    def progress(done: int, total: int) -> None:
        if not during:  # the first batch is replayed: new orders arrive meanwhile
            assert admin_client.get("/api/orders").json()["count"] == 1  # served from the live model
            during.append(place_and_run("bob", [("SKU-G", 2)]))
            during.append(place_and_run("alice", [("SKU-G", 1)], token="tok_declined"))

    live_generation = active_generation("orders")
    assert rebuild("orders", progress=progress) == 3
    rebuild("payments")
    drain()

    assert active_generation("orders") == live_generation + 1
    rebuilt = snapshot()
    assert set(during) <= set(rebuilt["orders"])
    assert rebuilt["orders"][during[0]]["status"] == "COMPLETED"
    assert rebuilt["orders"][during[1]]["status"] == "FAILED"
    assert_equals_the_command_side(rebuilt)
    # equal to a fresh, quiet rebuild
    call_command("rebuild_projections", stdout=io.StringIO(), stderr=io.StringIO())
    assert snapshot() == rebuilt
