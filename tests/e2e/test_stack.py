"""The saga over the real transport: outbox relay → RabbitMQ → per-context consumer processes."""

from __future__ import annotations

import pytest

from payments.public import payment_status

from .conftest import order_of, place, stock_of

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TERMINAL = {"COMPLETED", "CANCELLED", "FAILED"}


def _terminal(stack, client, order_id: str) -> dict:
    return stack.wait_until(
        lambda: (order := order_of(client, order_id))["status"] in TERMINAL and order,
        timeout=30,
        message=f"order {order_id} terminal",
    )


def test_happy_path_and_declined_payment_over_rabbitmq(stack, alice_client, stocked) -> None:
    stocked("SKU-Q", 10, price="7.25")
    ok = place(alice_client, [("SKU-Q", 2)])
    declined = place(alice_client, [("SKU-Q", 3)], token="tok_declined")
    assert _terminal(stack, alice_client, ok)["status"] == "COMPLETED"
    failed = _terminal(stack, alice_client, declined)
    assert (failed["status"], failed["failure_reason"], failed["saga"]["state"]) == (
        "FAILED",
        "PAYMENT_DECLINED",
        "COMPENSATED",
    )
    assert stock_of("SKU-Q") == (8, 0)
    assert payment_status(ok)["captures"] == 1


def test_cancel_after_completion_over_rabbitmq(stack, alice_client, stocked) -> None:
    stocked("SKU-W", 5)
    order_id = place(alice_client, [("SKU-W", 5)])
    assert _terminal(stack, alice_client, order_id)["status"] == "COMPLETED"
    assert alice_client.delete(f"/api/orders/{order_id}").status_code == 202
    stack.wait_until(
        lambda: order_of(alice_client, order_id)["status"] == "CANCELLED", timeout=30, message="cancelled"
    )
    assert stock_of("SKU-W") == (5, 0)
    assert payment_status(order_id)["status"] == "REFUNDED"


def test_thirty_orders_for_ten_units_over_rabbitmq(stack, alice_client, stocked) -> None:
    stocked("SKU-Z", 10)
    order_ids = [place(alice_client, [("SKU-Z", 1)]) for _ in range(30)]
    outcomes = [_terminal(stack, alice_client, order_id) for order_id in order_ids]
    assert sum(o["status"] == "COMPLETED" for o in outcomes) == 10
    assert [o["failure_reason"] for o in outcomes if o["status"] == "FAILED"] == ["OUT_OF_STOCK"] * 20
    assert stock_of("SKU-Z") == (0, 0)


def test_a_late_capture_completes_with_one_capture_over_rabbitmq(stack, alice_client, stocked) -> None:
    stocked("SKU-LATE", 4, price="6.00")
    order_id = place(alice_client, [("SKU-LATE", 1)], token="tok_late")
    order = _terminal(stack, alice_client, order_id)
    assert (order["status"], order["failure_reason"]) == ("COMPLETED", None)
    payment = payment_status(order_id)
    assert (payment["status"], payment["captures"], payment["refunded_amount"]) == ("CAPTURED", 1, "0.00")
    assert stock_of("SKU-LATE") == (3, 0)
