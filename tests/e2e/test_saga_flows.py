"""The order saga end to end: HTTP API → outbox → in-process bus → inventory and payments → order."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from eventstore.models import OutboxMessage
from payments.public import payment_status
from sagas.handlers import sweep_timeouts

from .conftest import order_of, place, settle, stock_of

pytestmark = pytest.mark.django_db(transaction=True)


def test_happy_path_completes_with_one_capture(alice_client, stocked) -> None:
    stocked("SKU-H", 10, price="25.00")
    order_id = place(alice_client, [("SKU-H", 3)])
    pending = order_of(alice_client, order_id)
    assert pending["saga"]["state"] == "STARTED" and pending["saga"]["needs_attention"] is False
    assert pending["total_amount"] == "75.00" and pending["version"] == 1
    settle()
    order = order_of(alice_client, order_id)
    assert (order["status"], order["failure_reason"]) == ("COMPLETED", None)
    assert order["saga"] == {
        "state": "COMPLETED",
        "step": None,
        "attempts": 0,
        "deadline": None,
        "needs_attention": False,
    }
    assert order["items"] == [
        {"product_id": "SKU-H", "product_name": "SKU-H", "quantity": 3, "price": "25.00"}
    ]
    assert order["version"] == 4 and order["updated_at"] >= order["created_at"]
    assert stock_of("SKU-H") == (7, 0)
    payment = payment_status(order_id)
    assert (payment["status"], payment["captures"], payment["amount"]) == ("CAPTURED", 1, "75.00")


def test_declined_payment_fails_the_order_and_restores_stock(alice_client, stocked) -> None:
    stocked("SKU-D", 5)
    order_id = place(alice_client, [("SKU-D", 2)], token="tok_declined")
    settle()
    order = order_of(alice_client, order_id)
    assert (order["status"], order["failure_reason"]) == ("FAILED", "PAYMENT_DECLINED")
    assert order["saga"]["state"] == "COMPENSATED"
    assert stock_of("SKU-D") == (5, 0)
    assert payment_status(order_id)["captures"] == 0


def test_out_of_stock_fails_without_compensation(alice_client, stocked) -> None:
    stocked("SKU-O", 1)
    order_id = place(alice_client, [("SKU-O", 2)])
    settle()
    order = order_of(alice_client, order_id)
    assert (order["status"], order["failure_reason"], order["saga"]["state"]) == (
        "FAILED",
        "OUT_OF_STOCK",
        "FAILED",
    )
    assert stock_of("SKU-O") == (1, 0)
    assert payment_status(order_id) is None


def test_flaky_gateway_completes_on_the_second_attempt(alice_client, stocked) -> None:
    stocked("SKU-F", 5)
    order_id = place(alice_client, [("SKU-F", 1)], token="tok_flaky")
    settle()
    assert order_of(alice_client, order_id)["status"] == "COMPLETED"
    payment = payment_status(order_id)
    assert (payment["attempts"], payment["captures"]) == (2, 1)


def test_gateway_down_fails_with_payment_unavailable(alice_client, stocked) -> None:
    stocked("SKU-G", 5)
    order_id = place(alice_client, [("SKU-G", 1)], token="tok_gateway_down")
    settle()
    order = order_of(alice_client, order_id)
    assert (order["status"], order["failure_reason"]) == ("FAILED", "PAYMENT_UNAVAILABLE")
    assert stock_of("SKU-G") == (5, 0)
    assert payment_status(order_id)["captures"] == 0


def test_slow_gateway_captures_once_and_completes(alice_client, stocked, settings) -> None:
    settings.PAYMENT_TIMEOUT = 0.3
    stocked("SKU-S", 5)
    order_id = place(alice_client, [("SKU-S", 1)], token="tok_slow")
    settle()
    assert order_of(alice_client, order_id)["status"] == "COMPLETED"
    assert payment_status(order_id)["captures"] == 1


def test_cancel_before_payment_restores_stock(alice_client, stocked) -> None:
    stocked("SKU-C", 4)
    order_id = place(alice_client, [("SKU-C", 3)])
    response = alice_client.delete(f"/api/orders/{order_id}")
    assert response.status_code == 202
    assert response.json() == {"order_id": order_id, "status": "PENDING"}
    assert alice_client.delete(f"/api/orders/{order_id}").status_code == 202, "repeated while it runs"
    settle()
    order = order_of(alice_client, order_id)
    assert (order["status"], order["saga"]["state"]) == ("CANCELLED", "COMPENSATED")
    assert stock_of("SKU-C") == (4, 0)
    assert payment_status(order_id) is None
    second = alice_client.delete(f"/api/orders/{order_id}")
    assert second.status_code == 409
    assert second["Content-Type"] == "application/problem+json"


def test_cancel_after_completion_refunds_and_restocks(alice_client, stocked) -> None:
    stocked("SKU-R", 6, price="4.50")
    order_id = place(alice_client, [("SKU-R", 2)])
    settle()
    assert stock_of("SKU-R") == (4, 0)
    response = alice_client.delete(f"/api/orders/{order_id}")
    assert response.status_code == 202 and response.json()["status"] == "COMPLETED"
    settle()
    order = order_of(alice_client, order_id)
    assert (order["status"], order["saga"]["state"]) == ("CANCELLED", "COMPENSATED")
    assert stock_of("SKU-R") == (6, 0)
    payment = payment_status(order_id)
    assert (payment["status"], payment["refunded_amount"], payment["captures"]) == ("REFUNDED", "9.00", 1)
    assert alice_client.delete(f"/api/orders/{order_id}").status_code == 409


def test_admin_fails_a_running_order(alice_client, admin_client, stocked) -> None:
    stocked("SKU-X", 3)
    order_id = place(alice_client, [("SKU-X", 1)])
    response = admin_client.put(f"/api/orders/{order_id}/status", {"status": "FAILED", "reason": "fraud"})
    assert response.status_code == 202 and response.json() == {"order_id": order_id, "status": "PENDING"}
    settle()
    order = order_of(alice_client, order_id)
    assert (order["status"], order["failure_reason"]) == ("FAILED", "ADMIN")
    assert stock_of("SKU-X") == (3, 0)
    again = admin_client.put(f"/api/orders/{order_id}/status", {"status": "CANCELLED"})
    assert again.status_code == 409


def test_a_saga_without_progress_times_out_and_fails(alice_client, stocked, settings) -> None:
    stocked("SKU-T", 5)
    order_id = place(alice_client, [("SKU-T", 2)])

    def lose_reservation_commands() -> None:
        """The inventory never answers this order: every reservation command for it is lost."""
        OutboxMessage.objects.filter(
            routing_key="inventory.ReserveInventory", body__correlation_id=order_id, sent_at__isnull=True
        ).update(sent_at=timezone.now())

    lose_reservation_commands()
    # The saga's deadline, as the API shows it, is SAGA_TIMEOUT after the order; the sweep is
    # run on a driven clock rather than waited for, so a slow machine cannot miss the moment.
    placed = order_of(alice_client, order_id)
    deadline = datetime.fromisoformat(placed["saga"]["deadline"])
    waited = (deadline - datetime.fromisoformat(placed["created_at"])).total_seconds()
    assert abs(waited - settings.SAGA_TIMEOUT) < 1, waited
    # a moment before it, the order is still running (a stalled step may be sent again: lost too)
    sweep_timeouts(now=deadline - timedelta(milliseconds=1))
    lose_reservation_commands()
    settle()
    running = order_of(alice_client, order_id)
    assert (running["status"], running["saga"]["state"]) == ("PENDING", "STARTED")
    # at it, the saga compensates and the order fails
    assert sweep_timeouts(now=deadline) == 1
    settle()
    order = order_of(alice_client, order_id)
    assert (order["status"], order["failure_reason"], order["saga"]["state"]) == (
        "FAILED",
        "TIMEOUT",
        "COMPENSATED",
    )
    assert stock_of("SKU-T") == (5, 0)
    assert sweep_timeouts(now=deadline + timedelta(days=1)) == 0  # nothing left to time out


def test_gateway_down_opens_the_breaker_then_orders_fail_fast_until_a_trial_call(
    alice_client, stocked, settings
) -> None:
    from payments.models import GatewayCharge

    # given a breaker of this test's own (a 6 s open period: ample on a loaded machine for the
    # refused order below) and a gateway that is down
    open_seconds = 6.0
    settings.PAYMENT_BREAKER_PREFIX = f"test:e2e:{uuid.uuid4().hex}"
    settings.PAYMENT_BREAKER_OPEN_SECONDS = open_seconds
    settings.PAYMENT_RETRY_BACKOFF = 0.01
    stocked("SKU-BR", 10)
    down = [place(alice_client, [("SKU-BR", 1)], token="tok_gateway_down") for _ in range(2)]
    settle()
    opened_by = time.monotonic()  # the breaker opened during that settle, before this instant
    # (two orders, three failed calls each: 6 calls, 100 % failures, opens the window)
    for order_id in down:
        assert order_of(alice_client, order_id)["failure_reason"] == "PAYMENT_UNAVAILABLE"
    # when a good card arrives while the breaker is open
    refused = place(alice_client, [("SKU-BR", 1)], token="tok_ok")
    settle()
    # then it fails fast: unavailable, compensated, and the gateway never saw it
    order = order_of(alice_client, refused)
    assert (order["status"], order["failure_reason"], order["saga"]["state"]) == (
        "FAILED",
        "PAYMENT_UNAVAILABLE",
        "COMPENSATED",
    )
    assert not GatewayCharge.objects.filter(idempotency_key=f"order-{refused}").exists()
    assert payment_status(refused)["captures"] == 0
    # and once the open period is over (surely, counted from after it opened), one trial call
    # decides: it succeeds and the order completes
    time.sleep(max(0.0, opened_by + open_seconds + 0.05 - time.monotonic()))
    trial = place(alice_client, [("SKU-BR", 1)], token="tok_ok")
    settle()
    assert order_of(alice_client, trial)["status"] == "COMPLETED"
    assert stock_of("SKU-BR") == (9, 0)
