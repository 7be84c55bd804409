"""Real threads with their own PostgreSQL connections racing for the same product rows."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connection

from eventstore.models import StoredEvent
from inventory.domain import Line
from inventory.handlers import ReservationOutcome
from inventory.models import Product, Reservation
from inventory.public import upsert_product

from .conftest import assert_buckets_balance, new_order_id, reserve

pytestmark = pytest.mark.django_db(transaction=True)


def _race(count: int, work: Callable[[int], ReservationOutcome]) -> list[ReservationOutcome]:
    """Run ``work(i)`` for i in range(count) on ``count`` threads released at the same moment."""
    start = threading.Barrier(count)

    def run(index: int) -> ReservationOutcome:
        try:
            start.wait(timeout=30)
            return work(index)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def test_thirty_buyers_of_ten_units_never_oversell(settings) -> None:
    settings.INVENTORY_RESERVATION_WAIT = 60
    upsert_product(product_id="HOT", name="Hot item", price=Decimal("9.99"), available=10)

    outcomes = _race(30, lambda _: reserve(new_order_id(), [Line("HOT", 1)]))

    assert sum(o.state == "HELD" for o in outcomes) == 10
    assert sum(o.state is None for o in outcomes) == 20
    assert Reservation.objects.filter(state="HELD").count() == 10
    row = Product.objects.get(product_id="HOT")
    assert (row.available, row.reserved, row.sold, row.received) == (0, 10, 0, 10)
    assert StoredEvent.objects.filter(event_type="InventoryReserved").count() == 10
    assert StoredEvent.objects.filter(event_type="InventoryReservationFailed").count() == 20
    assert_buckets_balance()


def test_opposite_order_multi_product_reservations_do_not_deadlock(settings) -> None:
    settings.INVENTORY_RESERVATION_WAIT = 60
    upsert_product(product_id="LEFT", name="Left", price=Decimal("1.00"), available=100)
    upsert_product(product_id="RIGHT", name="Right", price=Decimal("1.00"), available=100)

    def work(index: int) -> ReservationOutcome:
        lines = [Line("LEFT", 1), Line("RIGHT", 2)]
        return reserve(new_order_id(), lines if index % 2 else list(reversed(lines)))

    outcomes = _race(24, work)

    assert all(o.state == "HELD" for o in outcomes)
    left, right = Product.objects.get(product_id="LEFT"), Product.objects.get(product_id="RIGHT")
    assert (left.available, left.reserved) == (76, 24)
    assert (right.available, right.reserved) == (52, 48)
    assert_buckets_balance()


def test_concurrent_reserves_of_one_order_hold_once(settings) -> None:
    settings.INVENTORY_RESERVATION_WAIT = 60
    from eventstore.store import ConcurrencyError

    upsert_product(product_id="ONE", name="One", price=Decimal("1.00"), available=50)
    order_id = new_order_id()

    def work(_: int) -> ReservationOutcome | None:
        for _attempt in range(5):  # what the consumer does on a concurrency conflict
            try:
                return reserve(order_id, [Line("ONE", 3)])
            except ConcurrencyError:
                continue
        return None

    outcomes = _race(8, work)

    assert all(o is not None and o.state == "HELD" for o in outcomes)
    row = Product.objects.get(product_id="ONE")
    assert (row.available, row.reserved) == (47, 3)
    assert Reservation.objects.filter(order_id=order_id).count() == 1


def test_a_writer_waiting_for_the_reservation_lock_reads_the_stream_version_after_it() -> None:
    """The one-statement lock of a reservation reads the stream version in its snapshot, taken before
    it waited: a writer that committed meanwhile moved the stream, and no conflict must follow."""
    import time

    from django.db import transaction

    from inventory.handlers import confirm_reservation, release_reservation

    upsert_product(product_id="WAIT", name="Wait", price=Decimal("1.00"), available=5)
    order_id = new_order_id()
    reserve(order_id, [Line("WAIT", 2)])
    first_holds_the_lock = threading.Event()
    second_is_waiting = threading.Event()

    def first() -> None:
        try:
            with transaction.atomic():
                confirm_reservation(order_id=order_id, correlation_id=order_id, causation_id="")
                first_holds_the_lock.set()
                assert second_is_waiting.wait(timeout=30)
        finally:
            connection.close()

    def second() -> ReservationOutcome:
        try:
            assert first_holds_the_lock.wait(timeout=30)
            return release_reservation(
                order_id=order_id, reason="CANCELLED", correlation_id=order_id, causation_id=""
            )
        finally:
            connection.close()

    def waiting_for_a_lock() -> bool:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            return cursor.fetchone()[0] > 0

    with ThreadPoolExecutor(max_workers=2) as pool:
        holder = pool.submit(first)
        waiter = pool.submit(second)
        deadline = time.monotonic() + 30
        while not waiting_for_a_lock() and time.monotonic() < deadline:
            time.sleep(0.01)
        second_is_waiting.set()
        holder.result(timeout=30)
        released = waiter.result(timeout=30)

    assert released.answer.data["restocked"] is True  # decided on the confirmed state it waited for
    assert [m.version for m in released.events] == [3]
    row = Product.objects.get(product_id="WAIT")
    assert (row.available, row.reserved, row.sold) == (5, 0, 0)
    assert list(
        StoredEvent.objects.filter(aggregate_id=f"reservation-{order_id}")
        .order_by("version")
        .values_list("event_type", flat=True)
    ) == ["InventoryReserved", "InventoryConfirmed", "InventoryReleased"]


def test_concurrent_batches_on_shared_products_and_orders_never_oversell_nor_deadlock(settings) -> None:
    """Four consumers' batches at once: the same hot product, the same orders in several batches
    (a redelivery with a new message id), products named in opposite orders."""
    import uuid

    from django.utils import timezone

    from eventstore.handling import handle_batch
    from eventstore.messages import Message, utc_iso

    settings.INVENTORY_RESERVATION_WAIT = 60
    upsert_product(product_id="HOT", name="Hot", price=Decimal("1.00"), available=25)
    upsert_product(product_id="SIDE", name="Side", price=Decimal("1.00"), available=1000)
    shared = [new_order_id() for _ in range(10)]

    def command(order_id: str, lines: list[tuple[str, int]]) -> Message:
        return Message(
            message_id=str(uuid.uuid4()),
            kind="command",
            type="ReserveInventory",
            aggregate_type="reservation",
            aggregate_id=f"reservation-{order_id}",
            data={"order_id": order_id, "items": [{"product_id": p, "quantity": q} for p, q in lines]},
            occurred_at=utc_iso(timezone.now()),
            correlation_id=order_id,
            causation_id="",
            source="inventory",
        )

    def batch(index: int) -> list[BaseException | None]:
        lines = [("HOT", 1), ("SIDE", 1)] if index % 2 else [("SIDE", 1), ("HOT", 1)]
        messages = [command(order_id, lines) for order_id in shared]  # in every batch
        messages += [command(new_order_id(), lines) for _ in range(10)]
        return handle_batch("inventory", messages)

    outcomes = _race(4, batch)

    assert all(outcome is None for per_batch in outcomes for outcome in per_batch), outcomes
    held = Reservation.objects.filter(state="HELD").count()
    hot, side = Product.objects.get(product_id="HOT"), Product.objects.get(product_id="SIDE")
    assert held == 25  # every unit of the hot product, never more; the shared orders hold once each
    assert (hot.available, hot.reserved) == (0, 25)
    assert (side.available, side.reserved) == (975, 25)
    assert Reservation.objects.filter(order_id__in=shared).count() <= len(shared)
    assert_buckets_balance()
