"""The saga's changes to orders inside a unit of work: orders read together, once, and kept current."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from eventstore import sql as eventstore_sql
from eventstore.store import load_stream
from eventstore.unit_of_work import unit_of_work
from orders import public as orders_public
from orders.handlers import RequestedLine, load_order, place_order

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Change:
    action: str
    status: str = ""
    reason: str = ""
    by: str = ""


RESERVED = Change("status", "INVENTORY_RESERVED")
PAYING = Change("status", "PAYMENT_PROCESSING")


@pytest.fixture(params=["postgresql", "portable"])
def recorders(request, monkeypatch) -> str:
    """Each test twice: with the PostgreSQL recorder, and with the portable one (as on SQLite)."""
    if request.param == "portable":
        monkeypatch.setattr(eventstore_sql, "_dialect", eventstore_sql.Dialect())
    return request.param


@pytest.fixture
def place(db: None):
    from inventory.public import upsert_product

    upsert_product(product_id="SKU-C", name="Gamma", price=Decimal("2.50"), available=100)

    def placed() -> str:
        lines = [RequestedLine("SKU-C", 1)]
        return place_order(
            customer_id="alice", lines=lines, payment={"method": "card", "token": "t"}
        ).order_id

    return placed


def _event_store_reads(action) -> int:
    with CaptureQueriesContext(connection) as captured:
        action()
    return sum(
        1 for q in captured.captured_queries if q["sql"].startswith("SELECT") and "event_store" in q["sql"]
    )


def test_the_orders_announced_to_a_unit_are_read_with_one_statement(place, recorders) -> None:
    # given thirty orders announced to a unit of work
    orders = [place() for _ in range(30)]

    def change_all() -> None:
        with unit_of_work():
            orders_public.expect_changes(orders)
            for order_id in orders:
                orders_public.change_order(order_id=order_id, changes=[RESERVED], cause_id="c")

    # when each of them is changed, then they were read with one statement
    assert _event_store_reads(change_all) == 1
    assert {load_order(order_id).status for order_id in orders} == {"INVENTORY_RESERVED"}
    assert [(m.type, m.version) for m in load_stream(orders[3])] == [
        ("OrderCreated", 1),
        ("OrderStatusUpdated", 2),
    ]


def test_an_order_announced_but_not_changed_is_not_read(place, recorders) -> None:
    orders = [place() for _ in range(3)]

    def announce_only() -> None:
        with unit_of_work():
            orders_public.expect_changes(orders)

    assert _event_store_reads(announce_only) == 0


def test_changes_to_one_order_in_one_unit_see_each_other(place, recorders) -> None:
    order_id = place()

    def change_three_times() -> None:
        with unit_of_work():
            for change in (RESERVED, PAYING, Change("complete")):
                orders_public.change_order(order_id=order_id, changes=[change], cause_id="c")

    # the order is read once, each change decided on the state the previous one left
    assert _event_store_reads(change_three_times) == 1
    assert [(m.type, m.version) for m in load_stream(order_id)] == [
        ("OrderCreated", 1),
        ("OrderStatusUpdated", 2),
        ("OrderStatusUpdated", 3),
        ("OrderCompleted", 4),
    ]


def test_an_order_placed_in_the_unit_can_be_changed_in_it(place, recorders) -> None:
    place()  # the catalogue is warm
    with unit_of_work():
        order_id = place()
        orders_public.change_order(order_id=order_id, changes=[RESERVED], cause_id="c")
        assert orders_public.order_customer(order_id) == "alice"
    assert load_order(order_id).status == "INVENTORY_RESERVED"


def test_an_unknown_order_is_not_found_in_a_unit(recorders, db) -> None:
    with unit_of_work():
        assert orders_public.order_customer("no-such-order") is None
