"""``rebuild_projections``: a fresh replay, built aside and swapped in, equals the live model."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from eventstore.bus import drain
from eventstore.models import StreamCursor
from queries.models import OrderReadModel, PaymentReadModel
from queries.projections import active_generation
from queries.replay import rebuild

pytestmark = pytest.mark.django_db(transaction=True)


def snapshot() -> dict:
    """The live read models, generation aside."""
    orders = OrderReadModel.objects.filter(generation=active_generation("orders")).prefetch_related("items")
    payments = PaymentReadModel.objects.filter(generation=active_generation("payments"))
    return {
        "orders": {
            str(o.order_id): (
                o.customer_id,
                o.status,
                o.total_amount,
                o.failure_reason,
                o.created_at,
                o.updated_at,
                o.version,
                o.search_text,
                sorted((i.product_id, i.product_name, i.quantity, i.price) for i in o.items.all()),
            )
            for o in orders
        },
        "payments": {(str(p.order_id), p.outcome) for p in payments},
    }


def test_rebuild_equals_live(place_and_run) -> None:
    place_and_run("alice", [("SKU-W", 2), ("SKU-G", 1)])
    place_and_run("bob", [("SKU-G", 1)], token="tok_declined")
    place_and_run("bob", [("SKU-S", 5)])
    live = snapshot()
    assert len(live["orders"]) == 3 and len(live["payments"]) == 2
    before = active_generation("orders")

    out, err = io.StringIO(), io.StringIO()
    call_command("rebuild_projections", stdout=out, stderr=err)

    assert snapshot() == live
    assert active_generation("orders") == before + 1
    assert "orders: rebuilt, 3 rows" in out.getvalue() and "payments: rebuilt, 2 rows" in out.getvalue()
    assert "orders [" in err.getvalue() and "events" in err.getvalue()  # the progress bar
    # the old generation is gone, rows and cursors
    assert not OrderReadModel.objects.filter(generation=before).exists()
    assert not StreamCursor.objects.filter(consumer=f"queries.orders.g{before}").exists()

    # the live projector now writes the new generation
    later = place_and_run("alice", [("SKU-W", 1)])
    assert snapshot()["orders"][later][1] == "COMPLETED"
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
    assert rebuilt["orders"][during[0]][1] == "COMPLETED" and rebuilt["orders"][during[1]][1] == "FAILED"
    # equal to a fresh, quiet rebuild
    call_command("rebuild_projections", stdout=io.StringIO(), stderr=io.StringIO())
    assert snapshot() == rebuilt
