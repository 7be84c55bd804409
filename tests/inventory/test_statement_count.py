"""The SQL statements of the reservation commands, pinned (issue 7: round trips per order).

Counted inside the caller's transaction, as the consumer runs a command (its inbox row and
transaction are not the handler's). Reserve, confirm and release each take, on PostgreSQL:
the reservation locked with its stream version (1), the product rows locked in id order (1),
the events (1) and their outbox rows (1), the stock and the reservation row written (1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from inventory.domain import Line
from inventory.handlers import confirm_reservation, release_reservation
from inventory.models import Product, Reservation

from .conftest import assert_buckets_balance, new_order_id, reserve

pytestmark = pytest.mark.django_db

RESERVE_STATEMENTS = 5
CONFIRM_STATEMENTS = 5
RELEASE_STATEMENTS = 5


def _statements(operation: Callable[[], Any]) -> list[str]:
    with transaction.atomic(), CaptureQueriesContext(connection) as captured:
        operation()
    return [query["sql"] for query in captured.captured_queries]


@pytest.mark.parametrize("count", [1, 3])
def test_reserve_confirm_and_release_take_five_statements_each(make_product, count: int) -> None:
    ids = [f"P{index}" for index in range(count)]
    for product_id in ids:
        make_product(product_id, available=10)
    order_id = new_order_id()

    reserved = _statements(lambda: reserve(order_id, [Line(pid, 2) for pid in reversed(ids)]))
    assert len(reserved) == RESERVE_STATEMENTS, reserved
    assert sum("FOR UPDATE" in sql for sql in reserved) == 2  # the reservation, then every product at once
    assert not any("SAVEPOINT" in sql for sql in reserved)
    assert [(p.available, p.reserved) for p in Product.objects.filter(product_id__in=ids)] == [(8, 2)] * count

    confirm = _statements(
        lambda: confirm_reservation(order_id=order_id, correlation_id=order_id, causation_id="")
    )
    assert len(confirm) <= CONFIRM_STATEMENTS, confirm
    assert [(p.reserved, p.sold) for p in Product.objects.filter(product_id__in=ids)] == [(0, 2)] * count

    release = _statements(
        lambda: release_reservation(
            order_id=order_id, reason="CANCELLED", correlation_id=order_id, causation_id=""
        )
    )
    assert len(release) <= RELEASE_STATEMENTS, release
    assert [(p.available, p.sold) for p in Product.objects.filter(product_id__in=ids)] == [(10, 0)] * count
    assert Reservation.objects.get(order_id=order_id).state == "RELEASED"
    assert_buckets_balance()


def test_answers_that_move_no_stock_lock_and_write_no_product(make_product) -> None:
    make_product("A", available=10)
    order_id = new_order_id()
    reserve(order_id, [Line("A", 1)])
    confirm_reservation(order_id=order_id, correlation_id=order_id, causation_id="")

    repeated_reserve = _statements(lambda: reserve(order_id, [Line("A", 1)]))
    repeated_confirm = _statements(
        lambda: confirm_reservation(order_id=order_id, correlation_id=order_id, causation_id="")
    )
    unknown_release = _statements(
        lambda: release_reservation(
            order_id=new_order_id(), reason="TIMEOUT", correlation_id="", causation_id=""
        )
    )

    for statements in (repeated_reserve, repeated_confirm, unknown_release):
        assert len(statements) == 4, statements  # lock, event, outbox, reservation row
        assert not any("inventory_product" in sql for sql in statements), statements
    row = Product.objects.get(product_id="A")
    assert (row.available, row.reserved, row.sold) == (9, 0, 1)


def test_short_stock_writes_only_the_answer(make_product) -> None:
    make_product("A", available=1)
    order_id = new_order_id()
    statements = _statements(lambda: reserve(order_id, [Line("A", 2)]))
    assert len(statements) == 4, statements  # lock, products, event, outbox
    assert not Reservation.objects.filter(order_id=order_id).exists()
    assert Product.objects.get(product_id="A").available == 1
