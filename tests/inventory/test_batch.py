"""A consumer's batch of inventory commands: set-based, and the same outcome as one by one.

The batch is prepared (reservations locked together, then products together), each command
decides on the rows in hand, and the unit writes every moved product and reservation once.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from eventstore.handling import handle, handle_batch
from eventstore.messages import Message
from eventstore.store import load_stream
from inventory.models import Product, Reservation

from .conftest import assert_buckets_balance, new_order_id, reservation_command

pytestmark = pytest.mark.django_db


def _reserve(order_id: str, *lines: tuple[str, int]) -> Message:
    return reservation_command(
        "ReserveInventory",
        order_id,
        items=[{"product_id": pid, "quantity": quantity} for pid, quantity in lines],
        expires_at="2099-01-01T00:00:00Z",
    )


def _batch(messages: list[Message], caplog: pytest.LogCaptureFixture) -> list[str]:
    """Handle ``messages`` as one batch; its statements (no savepoints), asserting no fallback."""
    caplog.set_level(logging.INFO, logger="eventstore.handling")
    with CaptureQueriesContext(connection) as captured:
        outcomes = handle_batch("inventory", messages)
    assert outcomes == [None] * len(messages)
    assert "handling one by one" not in caplog.text, "the batch fell back to one message at a time"
    return [q["sql"] for q in captured.captured_queries if "SAVEPOINT" not in q["sql"]]


def _tables(statements: list[str]) -> Counter[str]:
    """How many statements touched each table (by the first table each names)."""
    tables = ("event_inbox", "inventory_reservation", "inventory_product", "event_store", "event_outbox")
    counted: Counter[str] = Counter()
    for sql in statements:
        counted[next((t for t in tables if t in sql), sql)] += 1
    return counted


@pytest.mark.parametrize("size", [1, 50])
def test_a_batch_costs_the_same_statements_whatever_its_size(make_product, caplog, size: int) -> None:
    for pid in ("A", "B", "C"):
        make_product(pid, available=1000)
    messages = [_reserve(new_order_id(), ("ABC"[n % 3], 1), ("C", 1)) for n in range(size)]

    statements = _batch(messages, caplog)

    # inbox, reservations locked (with their versions), products locked, products and
    # reservations written, events, outbox: one statement each, for 1 command or 50
    assert len(statements) == 6, statements
    assert _tables(statements) == {
        "event_inbox": 1,
        "inventory_reservation": 2,
        "inventory_product": 1,
        "event_store": 1,
        "event_outbox": 1,
    }, statements
    assert Reservation.objects.filter(state="HELD").count() == size
    assert Product.objects.get(product_id="C").reserved == size + sum(1 for n in range(size) if n % 3 == 2)
    assert_buckets_balance()


def test_a_hot_product_in_one_batch_is_locked_and_written_once_and_never_oversold(
    make_product, caplog
) -> None:
    make_product("HOT", available=30)
    orders = [new_order_id() for _ in range(50)]

    statements = _batch([_reserve(order_id, ("HOT", 1)) for order_id in orders], caplog)

    product_statements = [sql for sql in statements if "inventory_product" in sql]
    assert len(product_statements) == 2, product_statements  # one lock, one write
    answers = [load_stream(f"reservation-{order_id}")[-1].type for order_id in orders]
    # in the batch's order: the first 30 hold a unit, the last 20 find none left
    assert answers == ["InventoryReserved"] * 30 + ["InventoryReservationFailed"] * 20
    row = Product.objects.get(product_id="HOT")
    assert (row.available, row.reserved, row.sold, row.received) == (0, 30, 0, 30)
    assert Reservation.objects.filter(state="HELD").count() == 30
    assert_buckets_balance()


def _scenario(prefix: str) -> list[Message]:
    """Mixed commands, with several about one order and one product: the same shape per prefix."""
    a, b, c, d = (new_order_id() for _ in range(4))
    p, q = f"{prefix}P", f"{prefix}Q"
    return [
        _reserve(a, (p, 2), (q, 1)),
        _reserve(b, (p, 3)),
        reservation_command("ConfirmInventory", a),
        _reserve(c, (p, 1)),  # short: 2 + 3 held of 5
        reservation_command("ReleaseInventory", b, reason="CANCELLED"),
        _reserve(c, (p, 1)),  # now there is stock again
        reservation_command("ReleaseInventory", d, reason="TIMEOUT"),  # unknown: a RELEASED marker
        _reserve(d, (q, 1)),  # after the marker: answered, holds nothing
        reservation_command("ReleaseInventory", a, reason="CANCELLED"),  # restocks what was sold
        _reserve(a, (q, 1)),  # repeated: answers the outcome
    ]


def _final_state(messages: list[Message], prefix: str) -> dict[str, Any]:
    orders = list(dict.fromkeys(m.data["order_id"] for m in messages))
    return {
        "products": [
            (row.product_id.removeprefix(prefix), row.available, row.reserved, row.sold)
            for row in Product.objects.filter(product_id__startswith=prefix).order_by("product_id")
        ],
        "reservations": [
            Reservation.objects.filter(order_id=order_id).values_list("state", flat=True).first()
            for order_id in orders
        ],
        "answers": [
            [
                (e.version, e.type, _items(e.data.get("items"), prefix), e.data.get("restocked"))
                for e in load_stream(f"reservation-{order_id}")
            ]
            for order_id in orders
        ],
    }


def _items(items: list[dict[str, Any]] | None, prefix: str) -> list[tuple[str, int]]:
    return [(item["product_id"].removeprefix(prefix), item["quantity"]) for item in items or []]


def test_a_batch_ends_in_the_same_state_as_its_commands_one_by_one(make_product, caplog) -> None:
    for prefix in ("one", "batch"):
        make_product(f"{prefix}P", available=5)
        make_product(f"{prefix}Q", available=3)
    one_by_one, batched = _scenario("one"), _scenario("batch")

    for message in one_by_one:
        assert handle("inventory", message) is True
    _batch(batched, caplog)

    assert _final_state(batched, "batch") == _final_state(one_by_one, "one")
    assert_buckets_balance()


def test_a_redelivered_batch_changes_nothing(make_product, caplog) -> None:
    make_product("A", available=10)
    messages = [_reserve(new_order_id(), ("A", 2)) for _ in range(3)]
    _batch(messages, caplog)

    statements = _batch(messages, caplog)

    assert len(statements) == 1, statements  # the inbox finds every message handled
    assert Product.objects.get(product_id="A").reserved == 6


def test_answers_that_move_no_stock_lock_no_product_in_a_batch(make_product, caplog) -> None:
    make_product("A", available=10)
    held, released = new_order_id(), new_order_id()
    _batch(
        [_reserve(held, ("A", 2)), reservation_command("ReleaseInventory", released, reason="TIMEOUT")],
        caplog,
    )

    # a redelivered reserve (a new message id) repeats its outcome; a reserve after the release
    # marker answers it: neither needs stock, so the batch locks no product row
    statements = _batch([_reserve(held, ("A", 2)), _reserve(released, ("A", 1))], caplog)

    assert not any("inventory_product" in sql for sql in statements), statements
    assert Product.objects.get(product_id="A").reserved == 2
