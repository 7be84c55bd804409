"""The saga's commands handled by the inventory context (inbox dedupe, contract answers)."""

from __future__ import annotations

import pytest

from eventstore.commands import InvalidCommand
from eventstore.handling import handle
from eventstore.messages import Message
from eventstore.models import OutboxMessage
from eventstore.store import load_stream
from inventory.models import Product, Reservation

from .conftest import new_order_id, reservation_command

pytestmark = pytest.mark.django_db


def _answers(order_id: str) -> list[Message]:
    return load_stream(f"reservation-{order_id}")


def test_reserve_command_answers_inventory_reserved_with_correlation_and_causation(make_product) -> None:
    make_product("A", available=5)
    order_id = new_order_id()
    command = reservation_command(
        "ReserveInventory",
        order_id,
        items=[{"product_id": "A", "quantity": 2}],
        expires_at="2099-01-01T00:00:00Z",
    )

    assert handle("inventory", command) is True

    (answer,) = _answers(order_id)
    assert answer.type == "InventoryReserved"
    assert answer.correlation_id == order_id and answer.causation_id == command.message_id
    assert answer.data == {
        "order_id": order_id,
        "items": [{"product_id": "A", "quantity": 2}],
        "expires_at": "2099-01-01T00:00:00Z",
    }
    routing = OutboxMessage.objects.filter(message_id=answer.message_id).values_list("routing_key", flat=True)
    assert list(routing) == ["inventory.InventoryReserved"]


def test_redelivered_command_has_no_second_effect(make_product) -> None:
    make_product("A", available=5)
    order_id = new_order_id()
    command = reservation_command("ReserveInventory", order_id, items=[{"product_id": "A", "quantity": 2}])

    assert handle("inventory", command) is True
    assert handle("inventory", command) is False

    assert len(_answers(order_id)) == 1
    assert Product.objects.get(product_id="A").reserved == 2


def test_short_stock_answers_reservation_failed(make_product) -> None:
    make_product("A", available=1)
    order_id = new_order_id()
    handle(
        "inventory",
        reservation_command("ReserveInventory", order_id, items=[{"product_id": "A", "quantity": 2}]),
    )
    (answer,) = _answers(order_id)
    assert answer.type == "InventoryReservationFailed"
    assert answer.data == {
        "order_id": order_id,
        "reason": "OUT_OF_STOCK",
        "shortages": [{"product_id": "A", "requested": 2, "available": 1}],
    }


def test_confirm_then_release_commands_restock(make_product) -> None:
    make_product("A", available=5)
    order_id = new_order_id()
    handle(
        "inventory",
        reservation_command("ReserveInventory", order_id, items=[{"product_id": "A", "quantity": 2}]),
    )
    handle("inventory", reservation_command("ConfirmInventory", order_id))
    handle("inventory", reservation_command("ReleaseInventory", order_id, reason="CANCELLED"))

    _reserved, confirmed, released = _answers(order_id)
    assert confirmed.type == "InventoryConfirmed" and confirmed.data["items"] == [
        {"product_id": "A", "quantity": 2}
    ]
    assert released.type == "InventoryReleased" and released.data["restocked"] is True
    assert released.data["reason"] == "CANCELLED"
    row = Product.objects.get(product_id="A")
    assert (row.available, row.reserved, row.sold) == (5, 0, 0)


def test_release_command_for_an_order_never_reserved_answers_empty_items() -> None:
    order_id = new_order_id()
    handle("inventory", reservation_command("ReleaseInventory", order_id, reason="TIMEOUT"))
    (answer,) = _answers(order_id)
    assert answer.type == "InventoryReleased"
    assert answer.data == {"order_id": order_id, "items": [], "reason": "TIMEOUT", "restocked": False}
    assert Reservation.objects.get(order_id=order_id).state == "RELEASED"


@pytest.mark.parametrize(
    "data",
    [
        {"items": []},
        {"items": [{"product_id": "A", "quantity": 0}]},
        {"items": [{"product_id": "A", "quantity": "1"}]},
        {"items": [{"product_id": "A\u0000", "quantity": 1}]},
        {"items": [{"product_id": "A", "quantity": 1}], "expires_at": "tomorrow"},
    ],
)
def test_malformed_command_raises_and_changes_nothing(make_product, data) -> None:
    make_product("A", available=5)
    order_id = new_order_id()
    with pytest.raises(InvalidCommand):
        handle("inventory", reservation_command("ReserveInventory", order_id, **data))
    assert _answers(order_id) == []
    assert Product.objects.get(product_id="A").reserved == 0


def test_a_command_sent_through_the_outbox_is_answered_by_the_bus(make_product) -> None:
    from django.db import transaction

    from eventstore.bus import drain
    from eventstore.store import send

    make_product("A", available=5)
    order_id = new_order_id()
    with transaction.atomic():
        command = send(
            context="inventory",
            command="ReserveInventory",
            aggregate_type="reservation",
            aggregate_id=f"reservation-{order_id}",
            data={"order_id": order_id, "items": [{"product_id": "A", "quantity": 1}]},
            correlation_id=order_id,
            causation_id="",
        )

    drain()

    (answer,) = _answers(order_id)
    assert answer.type == "InventoryReserved" and answer.causation_id == command.message_id
    assert Product.objects.get(product_id="A").reserved == 1


def test_a_confirm_that_arrives_after_the_release_is_stale_and_changes_nothing(make_product, caplog) -> None:
    # given a reservation the saga's compensation released (the confirm it had sent before was
    # retried through a retry queue and comes back after the release)
    make_product("A", available=5)
    order_id = new_order_id()
    handle(
        "inventory",
        reservation_command("ReserveInventory", order_id, items=[{"product_id": "A", "quantity": 2}]),
    )
    handle("inventory", reservation_command("ReleaseInventory", order_id, reason="saga compensation"))

    # when the stale confirm is handled
    handled = handle("inventory", reservation_command("ConfirmInventory", order_id))

    # then it is consumed (not retried until it is dead-lettered) and sells nothing
    assert handled is True
    assert [m.type for m in _answers(order_id)] == ["InventoryReserved", "InventoryReleased"]
    product = Product.objects.get(product_id="A")
    assert (product.available, product.reserved, product.sold) == (5, 0, 0)
    assert "stale ConfirmInventory" in caplog.text
