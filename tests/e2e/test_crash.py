"""Crashes over the real transport: SIGKILL a consumer mid-batch and the relay mid-publish.

Forty orders go through the HTTP API while ``relay_outbox`` and two consumer processes run
(``sagas inventory`` — the busiest — and ``payments``). The relay is killed between
publishing a batch and marking it sent; the sagas+inventory consumer is killed while the last
wave is being handled. Both are restarted, and once every order is terminal the invariants of
docs/architecture.md "Invariants" must hold: stock buckets add up to what was received with nothing
left reserved, at most one capture per order, every capture of a failed or cancelled order refunded, no
event lost or applied twice, no dead letter.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from decimal import Decimal
from itertools import zip_longest
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from eventstore.models import DeadLetter, OutboxMessage, StoredEvent
from inventory.models import Product
from payments.domain import idempotency_key_for
from payments.models import GatewayCharge, GatewayRefund, PaymentRecord, PaymentSecret
from sagas.models import SagaInstance

from .conftest import order_of, place

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TERMINAL = {"COMPLETED", "CANCELLED", "FAILED"}
TERMINAL_EVENTS = {"OrderCompleted": "COMPLETED", "OrderFailed": "FAILED", "OrderCancelled": "CANCELLED"}

# product id -> (units received, price)
PRODUCTS = {
    "CR-A": (200, "4.00"),  # plenty: orders of it alone always complete
    "CR-B": (8, "6.50"),  # far more demanded than received: some orders fail OUT_OF_STOCK
    "CR-C": (30, "2.25"),  # the declined cards' product (never short)
    "CR-D": (10, "9.99"),  # the cancelled orders' product (never short)
}


@dataclass
class Placed:
    """One order the test placed, and what it expects of it."""

    order_id: str
    items: list[tuple[str, int]]
    token: str
    cancel: bool = False

    @property
    def total(self) -> Decimal:
        return sum((Decimal(PRODUCTS[p][1]) * q for p, q in self.items), Decimal("0.00"))


class Orders:
    """Places orders through the API and reads their outcome from the order streams."""

    def __init__(self, client: APIClient) -> None:
        self.client = client
        self.placed: list[Placed] = []

    def place(self, items: list[tuple[str, int]], token: str = "tok_ok") -> Placed:  # noqa: S107 - simulator token
        order = Placed(place(self.client, items, token=token), items, token)
        self.placed.append(order)
        return order

    def wave(self, specs: list[tuple[list[tuple[str, int]], str, int]]) -> list[Placed]:
        """Place ``count`` orders of each ``(items, token, count)``, interleaved."""
        # Round robin over the kinds, so contended, declined and plain orders arrive mixed.
        kinds = [[(items, token)] * count for items, token, count in specs]
        queue = [spec for row in zip_longest(*kinds) for spec in row if spec is not None]
        return [self.place(items, token) for items, token in queue]

    def outcomes(self) -> dict[str, str]:
        """order id -> its last terminal status so far (absent while running), in one query."""
        rows = (
            StoredEvent.objects.filter(aggregate_type="order", event_type__in=list(TERMINAL_EVENTS))
            .order_by("id")
            .values_list("aggregate_id", "event_type")
        )
        return {aggregate_id: TERMINAL_EVENTS[event_type] for aggregate_id, event_type in rows}

    def settled(self) -> bool:
        """Every order terminal (the cancelled ones CANCELLED), or parked for a person."""
        outcomes = self.outcomes()
        parked = set(SagaInstance.objects.filter(needs_attention=True).values_list("order_id", flat=True))
        return all(
            o.order_id in parked
            or (outcomes.get(o.order_id) == "CANCELLED" if o.cancel else o.order_id in outcomes)
            for o in self.placed
        )


def _unmarked_outbox_rows() -> int:
    """Rows a relay claimed and (with the test pause) published but has not marked sent yet."""
    return OutboxMessage.objects.filter(sent_at__isnull=True, claimed_until__isnull=False).count()


def test_sigkill_of_consumer_and_relay_mid_batch_keeps_every_invariant(
    stack_factory, alice_client, stocked
) -> None:
    for product_id, (received, price) in PRODUCTS.items():
        stocked(product_id, received, price=price)
    stack = stack_factory
    core = stack.start_consumer("sagas", "inventory", name="core")
    stack.start_consumer("payments", name="payments")
    # The test hook widens the publish → mark window so the kill lands inside it; a short
    # claim lets the restarted relay take the killed relay's rows again soon.
    relay = stack.start_relay(RELAY_PAUSE_AFTER_PUBLISH="0.3", RELAY_CLAIM_SECONDS="2")
    orders = Orders(alice_client)

    # Wave 1: plain, declined, and the order cancelled after it completes.
    cancel_after = orders.place([("CR-D", 1)])
    cancel_after.cancel = True
    first = orders.wave([([("CR-A", 1)], "tok_ok", 10), ([("CR-C", 2)], "tok_declined", 3)])

    def first_completed() -> bool:
        outcomes = orders.outcomes()
        done = sum(outcomes.get(o.order_id) == "COMPLETED" for o in first)
        return outcomes.get(cancel_after.order_id) == "COMPLETED" and done >= 3

    stack.wait_until(
        first_completed,
        timeout=30,
        message="the first orders completed",
    )
    cancelled = alice_client.delete(f"/api/orders/{cancel_after.order_id}")
    assert cancelled.status_code == 202, cancelled.content

    # Wave 2, and the relay killed between publishing a batch and marking it sent.
    orders.wave([([("CR-A", 2), ("CR-B", 1)], "tok_ok", 5), ([("CR-B", 2)], "tok_ok", 5)])
    stack.wait_until(_unmarked_outbox_rows, timeout=15, interval=0.01, message="relay inside its window")
    relay.kill()
    assert _unmarked_outbox_rows() > 0, "the relay was not killed between publish and mark"
    relay.restart(RELAY_PAUSE_AFTER_PUBLISH="0")
    stack.wait_until(lambda: relay.log().count("relay running") >= 2, message="relay restarted")

    # Wave 3, one order cancelled at once, and the sagas+inventory consumer killed mid-work.
    third = orders.wave(
        [([("CR-A", 1)], "tok_ok", 9), ([("CR-C", 1)], "tok_declined", 3), ([("CR-B", 3)], "tok_ok", 3)]
    )
    cancel_before = orders.place([("CR-D", 2)])
    cancel_before.cancel = True
    cancelling = alice_client.delete(f"/api/orders/{cancel_before.order_id}")
    assert cancelling.status_code == 202, cancelling.content
    assert len(orders.placed) == 40
    stack.wait_until(
        lambda: not {o.order_id for o in third}.isdisjoint(orders.outcomes()),
        timeout=30,
        interval=0.02,
        message="the last wave being handled",
    )
    core.kill()
    outcomes_at_kill = orders.outcomes()
    unfinished_at_kill = sum(1 for o in orders.placed if o.order_id not in outcomes_at_kill)
    core.start()
    stack.wait_consuming(core, ("sagas", "inventory"))
    assert unfinished_at_kill > 0, "every order was already terminal when the consumer was killed"

    # Every order ends terminal (or parked), and the outbox is fully relayed.
    stack.wait_until(orders.settled, timeout=120, interval=0.2, message="every order terminal")
    stack.wait_until(
        lambda: not OutboxMessage.objects.filter(sent_at__isnull=True).exists(),
        timeout=15,
        message="outbox relayed",
    )

    views = _assert_orders(alice_client, orders)
    _assert_stock(alice_client, orders, views)
    _assert_payments(orders, views)
    _assert_events(orders)
    _assert_no_card_token_kept(orders)
    assert list(DeadLetter.objects.values_list("message_type", "error")) == []


def _assert_orders(client: APIClient, orders: Orders) -> dict[str, dict[str, Any]]:
    """Final statuses through the API; what each kind of order must have become."""
    views = {o.order_id: order_of(client, o.order_id) for o in orders.placed}
    parked = [v["order_id"] for v in views.values() if v["saga"]["needs_attention"]]
    assert parked == [], f"parked sagas in a run whose steps never keep failing: {parked}"
    for o in orders.placed:
        view = views[o.order_id]
        state = (view["status"], view["failure_reason"], view["saga"]["state"])
        if o.cancel:
            assert state == ("CANCELLED", None, "COMPENSATED"), (o, view)
        elif o.token == "tok_declined":
            assert state == ("FAILED", "PAYMENT_DECLINED", "COMPENSATED"), (o, view)
        elif any(p == "CR-B" for p, _ in o.items):
            assert state in {("COMPLETED", None, "COMPLETED"), ("FAILED", "OUT_OF_STOCK", "FAILED")}, (
                o,
                view,
            )
        else:
            assert state == ("COMPLETED", None, "COMPLETED"), (o, view)
        assert view["total_amount"] == f"{o.total:.2f}", (o, view)
    contended = [views[o.order_id]["failure_reason"] for o in orders.placed if ("CR-B", 3) in o.items]
    assert "OUT_OF_STOCK" in contended, "CR-B was never short: the test did not exercise stock-outs"
    return views


def _assert_stock(client: APIClient, orders: Orders, views: dict[str, dict[str, Any]]) -> None:
    """available + reserved + sold = received; nothing held; sold = what completed orders hold."""
    sold: Counter[str] = Counter()
    for o in orders.placed:
        if views[o.order_id]["status"] == "COMPLETED":
            for product_id, quantity in o.items:
                sold[product_id] += quantity
    for product_id, (received, _) in PRODUCTS.items():
        row = Product.objects.get(pk=product_id)
        buckets = (row.available, row.reserved, row.sold, row.received)
        assert min(buckets) >= 0, (product_id, buckets)
        assert row.received == received, (product_id, buckets)
        assert row.available + row.reserved + row.sold == row.received, (product_id, buckets)
        assert row.reserved == 0, (product_id, buckets)
        assert row.sold == sold[product_id], (product_id, buckets, sold[product_id])
        answer = client.get(f"/api/inventory/{product_id}").json()
        assert (answer["available"], answer["reserved"]) == (row.available, 0), (product_id, answer)
    assert Product.objects.get(pk="CR-B").sold <= PRODUCTS["CR-B"][0]


def _assert_payments(orders: Orders, views: dict[str, dict[str, Any]]) -> None:
    """The gateway ledger: one capture per completed order, every other capture refunded in full."""
    keys = {idempotency_key_for(o.order_id): o for o in orders.placed}
    charges = {c.idempotency_key: c for c in GatewayCharge.objects.filter(idempotency_key__in=keys)}
    assert GatewayCharge.objects.count() == len(charges), "a charge not keyed by one of our orders"
    refunds: defaultdict[str, Decimal] = defaultdict(Decimal)
    for refund in GatewayRefund.objects.all():
        refunds[refund.idempotency_key] += refund.amount
    records = {r.order_id: r for r in PaymentRecord.objects.all()}
    for key, o in keys.items():
        status = views[o.order_id]["status"]
        charge = charges.get(key)
        record = records.get(o.order_id)
        assert record is None or record.captures <= 1, (o, record.captures)
        if charge is None or charge.status != "CAPTURED":
            assert status != "COMPLETED", (o, charge)
            assert refunds[key] == 0, (o, refunds[key])
            continue
        assert charge.amount == o.total, (o, charge.amount)
        if status == "COMPLETED":
            assert (charge.refunded_amount, refunds[key]) == (0, 0), (o, charge.refunded_amount)
            assert record is not None and record.captures == 1, (o, record)
        else:
            assert charge.refunded_amount == charge.amount == refunds[key], (
                o,
                status,
                charge.refunded_amount,
            )
    declined = [o for o in orders.placed if o.token == "tok_declined"]
    assert all(charges[idempotency_key_for(o.order_id)].status == "DECLINED" for o in declined)
    out_of_stock = [o for o in orders.placed if views[o.order_id]["failure_reason"] == "OUT_OF_STOCK"]
    assert not [o for o in out_of_stock if idempotency_key_for(o.order_id) in charges], (
        "charged before reserving"
    )


def _assert_events(orders: Orders) -> None:
    """One OrderCreated per 202; no effect recorded twice after the redeliveries."""
    ids = [o.order_id for o in orders.placed]
    created = Counter(
        StoredEvent.objects.filter(event_type="OrderCreated").values_list("aggregate_id", flat=True)
    )
    assert sum(created.values()) == len(ids) == 40
    assert set(created) == set(ids) and set(created.values()) == {1}
    once_per_stream = {
        "order": ("OrderCompleted", "OrderFailed", "OrderCancelled"),
        "reservation": ("InventoryReserved", "InventoryReservationFailed", "InventoryConfirmed"),
    }
    for aggregate_type, event_types in once_per_stream.items():
        counts = Counter(
            StoredEvent.objects.filter(aggregate_type=aggregate_type, event_type__in=event_types).values_list(
                "aggregate_id", "event_type"
            )
        )
        twice = {key: n for key, n in counts.items() if n > 1}
        assert twice == {}, f"applied twice after a crash: {twice}"


def _assert_no_card_token_kept(orders: Orders) -> None:
    """Card tokens (issue 14): in no event ever; once every payment settled, held by no one."""
    with connection.cursor() as cursor:
        for token in sorted({o.token for o in orders.placed}):
            cursor.execute("SELECT count(*) FROM event_store e WHERE CAST(e AS text) LIKE %s", [f"%{token}%"])
            assert cursor.fetchone()[0] == 0, f"{token} is in the event log"
    assert list(PaymentSecret.objects.values_list("order_id", flat=True)) == []
    assert list(SagaInstance.objects.exclude(payment_token="").values_list("order_id", "state")) == []
