"""Reservation handlers on the real PostgreSQL: rows and events written together."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from eventstore.models import StoredEvent
from eventstore.store import load_stream
from inventory.bulkhead import ReservationBusy, reservation_slot
from inventory.domain import Line, ReservationConflict
from inventory.handlers import (
    ReservationNotFound,
    confirm_reservation,
    expire_reservations,
    release_reservation,
    reserve_stock,
)
from inventory.models import Product, Reservation

from .conftest import assert_buckets_balance, new_order_id

pytestmark = pytest.mark.django_db


def _reserve(order_id: str, *lines: tuple[str, int], expires_in: float = 300):
    return reserve_stock(
        order_id=order_id,
        lines=[Line(pid, qty) for pid, qty in lines],
        expires_at=timezone.now() + timedelta(seconds=expires_in),
        correlation_id=order_id,
        causation_id="",
    )


def _levels(product_id: str) -> tuple[int, int, int]:
    row = Product.objects.get(product_id=product_id)
    return row.available, row.reserved, row.sold


def _stream_types(order_id: str) -> list[str]:
    return [m.type for m in load_stream(f"reservation-{order_id}")]


def test_reserve_holds_all_lines_and_stores_the_event(make_product) -> None:
    make_product("A", available=5)
    make_product("B", available=3)
    order_id = new_order_id()

    outcome = _reserve(order_id, ("A", 2), ("B", 3))

    assert outcome.state == "HELD"
    assert _levels("A") == (3, 2, 0) and _levels("B") == (0, 3, 0)
    row = Reservation.objects.get(order_id=order_id)
    assert row.state == "HELD" and row.items == [
        {"product_id": "A", "quantity": 2},
        {"product_id": "B", "quantity": 3},
    ]
    (event,) = load_stream(f"reservation-{order_id}")
    assert event.type == "InventoryReserved" and event.correlation_id == order_id
    assert event.aggregate_type == "reservation" and event.data["expires_at"].endswith("Z")
    assert_buckets_balance()


def test_reserve_is_all_or_nothing(make_product) -> None:
    make_product("A", available=5)
    make_product("B", available=1)
    order_id = new_order_id()

    outcome = _reserve(order_id, ("A", 2), ("B", 2))

    assert outcome.state is None
    assert outcome.shortages == [{"product_id": "B", "requested": 2, "available": 1}]
    assert _levels("A") == (5, 0, 0) and _levels("B") == (1, 0, 0)
    assert not Reservation.objects.filter(order_id=order_id).exists()
    assert _stream_types(order_id) == ["InventoryReservationFailed"]


def test_unknown_product_is_a_shortage(make_product) -> None:
    make_product("A", available=5)
    outcome = _reserve(new_order_id(), ("A", 1), ("NOPE", 1))
    assert outcome.shortages == [{"product_id": "NOPE", "requested": 1, "available": 0}]
    assert _levels("A") == (5, 0, 0)


def test_second_reserve_for_an_order_answers_the_existing_outcome(make_product) -> None:
    make_product("A", available=5)
    order_id = new_order_id()
    _reserve(order_id, ("A", 2))

    again = _reserve(order_id, ("A", 2))

    assert again.state == "HELD"
    assert _levels("A") == (3, 2, 0)
    assert _stream_types(order_id) == ["InventoryReserved", "InventoryReserved"]


def test_confirm_release_and_restock_keep_the_buckets_balanced(make_product) -> None:
    make_product("A", available=5)
    make_product("B", available=5)
    held, sold, untouched = new_order_id(), new_order_id(), new_order_id()
    _reserve(held, ("A", 1), ("B", 2))
    _reserve(sold, ("A", 3))
    _reserve(untouched, ("B", 1))

    confirm_reservation(order_id=sold, correlation_id=sold, causation_id="")
    assert _levels("A") == (1, 1, 3)
    assert_buckets_balance()

    released = release_reservation(
        order_id=held, reason="PAYMENT_DECLINED", correlation_id=held, causation_id=""
    )
    assert released.answer.data["restocked"] is False
    assert _levels("A") == (2, 0, 3) and _levels("B") == (4, 1, 0)
    assert_buckets_balance()

    restocked = release_reservation(order_id=sold, reason="CANCELLED", correlation_id=sold, causation_id="")
    assert restocked.answer.data == {
        "order_id": sold,
        "items": [{"product_id": "A", "quantity": 3}],
        "reason": "CANCELLED",
        "restocked": True,
    }
    assert _levels("A") == (5, 0, 0)
    assert Reservation.objects.get(order_id=sold).state == "RELEASED"
    assert_buckets_balance()
    assert _stream_types(sold) == ["InventoryReserved", "InventoryConfirmed", "InventoryReleased"]


def test_confirm_twice_sells_once(make_product) -> None:
    make_product("A", available=5)
    order_id = new_order_id()
    _reserve(order_id, ("A", 2))
    confirm_reservation(order_id=order_id, correlation_id=order_id, causation_id="")
    confirm_reservation(order_id=order_id, correlation_id=order_id, causation_id="")
    assert _levels("A") == (3, 0, 2)


def test_confirm_unknown_or_released_reservation_is_refused(make_product) -> None:
    with pytest.raises(ReservationNotFound):
        confirm_reservation(order_id=new_order_id(), correlation_id="", causation_id="")
    make_product("A", available=5)
    order_id = new_order_id()
    _reserve(order_id, ("A", 2))
    release_reservation(order_id=order_id, reason="ADMIN", correlation_id=order_id, causation_id="")
    with pytest.raises(ReservationConflict):
        confirm_reservation(order_id=order_id, correlation_id=order_id, causation_id="")
    assert _levels("A") == (5, 0, 0)


def test_release_with_nothing_held_answers_empty_and_blocks_a_late_reserve(make_product) -> None:
    make_product("A", available=5)
    order_id = new_order_id()

    first = release_reservation(order_id=order_id, reason="TIMEOUT", correlation_id=order_id, causation_id="")
    second = release_reservation(
        order_id=order_id, reason="TIMEOUT", correlation_id=order_id, causation_id=""
    )
    late = _reserve(order_id, ("A", 2))

    assert first.answer.data["items"] == [] and second.answer.data["items"] == []
    assert late.state == "RELEASED" and late.answer.type == "InventoryReleased"
    assert _levels("A") == (5, 0, 0)


def test_expiry_releases_held_reservations_past_their_deadline(make_product) -> None:
    make_product("A", available=5)
    due, not_due, confirmed = new_order_id(), new_order_id(), new_order_id()
    _reserve(due, ("A", 2), expires_in=-1)
    _reserve(not_due, ("A", 1), expires_in=300)
    _reserve(confirmed, ("A", 1), expires_in=-1)
    confirm_reservation(order_id=confirmed, correlation_id=confirmed, causation_id="")

    assert expire_reservations() == 1

    assert Reservation.objects.get(order_id=due).state == "EXPIRED"
    assert Reservation.objects.get(order_id=not_due).state == "HELD"
    assert _levels("A") == (3, 1, 1)
    reserved_event, expired_event = load_stream(f"reservation-{due}")
    assert expired_event.type == "InventoryReleased" and expired_event.data["reason"] == "EXPIRED"
    assert expired_event.causation_id == reserved_event.message_id
    assert expire_reservations() == 0
    # the saga's own release arriving afterwards still gets its answer, with nothing to give back
    late = release_reservation(order_id=due, reason="TIMEOUT", correlation_id=due, causation_id="")
    assert late.answer.data["items"] == [] and _levels("A") == (3, 1, 1)
    assert_buckets_balance()


def test_expiry_task_is_the_celery_entry_point(make_product) -> None:
    from inventory.tasks import expire_reservations as task

    make_product("A", available=1)
    _reserve(new_order_id(), ("A", 1), expires_in=-1)
    assert task() == 1
    assert _levels("A") == (1, 0, 0)


def test_bulkhead_full_fails_with_a_retryable_error(make_product, settings) -> None:
    settings.INVENTORY_RESERVATION_CONCURRENCY = 1
    settings.INVENTORY_RESERVATION_WAIT = 0.05
    make_product("A", available=5)
    order_id = new_order_id()

    with reservation_slot(), pytest.raises(ReservationBusy):
        _reserve(order_id, ("A", 1))

    assert _levels("A") == (5, 0, 0)
    assert _reserve(order_id, ("A", 1)).state == "HELD"


def test_check_constraints_refuse_negative_or_unbalanced_stock(make_product) -> None:
    make_product("A", available=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        Product.objects.filter(product_id="A").update(available=-1, received=-1)
    with pytest.raises(IntegrityError), transaction.atomic():
        Product.objects.filter(product_id="A").update(available=2)
    assert StoredEvent.objects.filter(aggregate_id="product-A").count() == 1
