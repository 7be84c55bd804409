"""Interleavings that once put money on the wrong side, each replayed through the real code paths.

Every test drives the HTTP API, the outbox, the in-process bus (the same handlers and inbox as
the consumers), the payment runner and the simulator's ledger on PostgreSQL, delivering the
messages of one order in the order the interleaving needs. The promise checked each time: never
two captures for an order, never a capture kept on an order that did not complete, and the order
terminal only after every effect committed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone

from eventstore import bus
from eventstore.models import OutboxMessage
from payments.charging import resume_stalled_payments
from payments.public import payment_status
from payments.reconciliation import reconcile_with_gateway
from payments.simulator import CHARGES
from sagas import domain as saga_domain
from sagas import handlers as saga_handlers
from sagas.handlers import sweep_timeouts
from sagas.models import SagaInstance
from tests.fixtures.stack import purge_queues

from .conftest import order_of, place, settle, stock_of

pytestmark = pytest.mark.django_db(transaction=True)

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")


# --- delivering one order's messages in a chosen order ---------------------------------------


def _pending(order_id: str, routing_key: str) -> list[OutboxMessage]:
    return list(
        OutboxMessage.objects.filter(
            sent_at__isnull=True, routing_key=routing_key, body__correlation_id=order_id
        ).order_by("id")
    )


def deliver(order_id: str, routing_key: str) -> int:
    """Hand the order's pending messages with ``routing_key`` to their consumers, oldest first."""
    rows = _pending(order_id, routing_key)
    for row in rows:
        bus._dispatch_row(row)
    return len(rows)


def lose(order_id: str, routing_key: str) -> int:
    """A message lost on the way: marked sent, delivered to no one."""
    return OutboxMessage.objects.filter(
        sent_at__isnull=True, routing_key=routing_key, body__correlation_id=order_id
    ).update(sent_at=timezone.now())


def ledger(order_id: str) -> tuple[str, Decimal, Decimal] | None:
    """The gateway ledger's (status, amount, refunded) for the order's key."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT status, amount, refunded_amount FROM {CHARGES} WHERE idempotency_key = %s",
            [f"order-{order_id}"],
        )
        row = cursor.fetchone()
    return None if row is None else (row[0], Decimal(row[1]), Decimal(row[2]))


def net_capture(order_id: str) -> Decimal:
    """What the gateway holds for the order: captured minus refunded (0 when nothing captured)."""
    entry = ledger(order_id)
    if entry is None or entry[0] != "CAPTURED":
        return Decimal("0.00")
    return entry[1] - entry[2]


def assert_money_right(client, order_id: str) -> dict:
    """The order is terminal and the gateway holds its total if it completed, nothing otherwise."""
    order = order_of(client, order_id)
    assert order["status"] in TERMINAL, order
    expected = Decimal(order["total_amount"]) if order["status"] == "COMPLETED" else Decimal("0.00")
    assert net_capture(order_id) == expected, (order["status"], ledger(order_id))
    assert payment_status(order_id) is None or payment_status(order_id)["captures"] <= 1
    return order


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


@contextmanager
def ledger_row_locked(order_id: str, amount: Decimal, seconds: float) -> Iterator[threading.Thread]:
    """Hold the ledger row of the order's key locked for ``seconds`` from another connection.

    Every charge call blocks on it and takes effect only when it is released: a gateway whose
    capture lands after its caller stopped waiting (a row lock, an IO stall at the gateway).
    """
    settings = connection.settings_dict
    params = {"dbname": settings["NAME"], "user": settings["USER"], "host": settings["HOST"]}
    if settings.get("PORT"):
        params["port"] = str(settings["PORT"])
    locker = psycopg.connect(**params)
    key = f"order-{order_id}"
    with locker.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {CHARGES} (idempotency_key, token, amount, status, charge_calls, "
            "refunded_amount, created_at, updated_at) VALUES (%s, 'tok_ok', %s, 'NEW', 0, 0, now(), now())",
            [key, amount],
        )
    locker.commit()
    with locker.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {CHARGES} WHERE idempotency_key = %s FOR UPDATE", [key])

    def release() -> None:
        time.sleep(seconds)
        locker.commit()
        locker.close()

    holder = threading.Thread(target=release, daemon=True)
    holder.start()
    try:
        yield holder
    finally:
        holder.join(timeout=seconds + 10)


def _reserve_and_ask_for_payment(order_id: str) -> None:
    assert deliver(order_id, "inventory.ReserveInventory") == 1
    assert deliver(order_id, "inventory.InventoryReserved") == 1
    assert SagaInstance.objects.get(order_id=order_id).step == saga_domain.PAY


# --- 1. a capture that lands after the runner gave up ---------------------------------------


@override_settings(PAYMENT_TIMEOUT=0.2, PAYMENT_RETRY_ATTEMPTS=2, PAYMENT_RETRY_BACKOFF=0.05)
def test_a_capture_landing_after_every_attempt_timed_out_is_never_kept(alice_client, stocked) -> None:
    stocked("SKU-L", 5, price="20.00")
    order_id = place(alice_client, [("SKU-L", 1)])
    _reserve_and_ask_for_payment(order_id)
    # Every call times out at the caller; the first one captures once the lock goes (1 s),
    # inside the calls' limit (2 x 0.2 + 1 s): the runner must wait for it, not fail.
    with ledger_row_locked(order_id, Decimal("20.00"), seconds=1.0):
        deliver(order_id, "payments.ProcessPayment")
    wait_for(lambda: (ledger(order_id) or ("",))[0] == "CAPTURED")
    settle()
    order = assert_money_right(alice_client, order_id)
    assert order["status"] == "COMPLETED"
    payment = payment_status(order_id)
    assert (payment["status"], payment["captures"]) == ("CAPTURED", 1)


@override_settings(
    PAYMENT_TIMEOUT=0.2, PAYMENT_RETRY_ATTEMPTS=2, PAYMENT_RETRY_BACKOFF=0.05, PAYMENT_CALL_LIMIT=0.3
)
def test_a_capture_landing_past_the_call_limit_is_found_by_reconciliation_and_refunded(
    alice_client, stocked
) -> None:
    stocked("SKU-R", 5, price="20.00")
    order_id = place(alice_client, [("SKU-R", 1)])
    _reserve_and_ask_for_payment(order_id)
    # The gateway breaks its own deadline: the capture lands after the payment failed.
    with ledger_row_locked(order_id, Decimal("20.00"), seconds=2.5):
        deliver(order_id, "payments.ProcessPayment")
        # Its runner saw its own call still running past the limit: it left the payment UNKNOWN.
        assert payment_status(order_id)["status"] == "UNKNOWN"
        # The resume task (another process, in the stack) knows only the limit, which has passed.
        assert resume_stalled_payments(older_than=0) == [order_id]
        assert payment_status(order_id)["status"] == "FAILED"
        settle()
        assert order_of(alice_client, order_id)["status"] == "FAILED"
    wait_for(lambda: (ledger(order_id) or ("",))[0] == "CAPTURED")
    assert net_capture(order_id) == Decimal("20.00")  # a kept capture, until reconciliation
    assert reconcile_with_gateway(window=600) == {"late_capture": 1}
    settle()
    assert_money_right(alice_client, order_id)
    assert payment_status(order_id)["status"] == "REFUNDED"
    assert reconcile_with_gateway(window=600) == {}


@override_settings(PAYMENT_TIMEOUT=0.2, PAYMENT_RETRY_BACKOFF=0.05)
def test_tok_late_completes_with_exactly_one_capture(alice_client, stocked) -> None:
    stocked("SKU-T", 5, price="15.00")
    order_id = place(alice_client, [("SKU-T", 2)], token="tok_late")
    _reserve_and_ask_for_payment(order_id)
    deliver(order_id, "payments.ProcessPayment")
    # The ledger shows nothing when first asked; the capture lands after the caller's timeout.
    settle()
    order = assert_money_right(alice_client, order_id)
    assert order["status"] == "COMPLETED"
    assert payment_status(order_id)["captures"] == 1
    assert stock_of("SKU-T") == (3, 0)


# --- 2. a compensation retry must never start a charge ----------------------------------------


@override_settings(PAYMENT_RETRY_ATTEMPTS=1)
def test_a_compensation_retry_asks_for_the_outcome_and_never_charges(alice_client, stocked) -> None:
    stocked("SKU-C", 5, price="10.00")
    order_id = place(alice_client, [("SKU-C", 1)], token="tok_flaky")
    _reserve_and_ask_for_payment(order_id)
    # Cancelled while the payment request is still on its way to payments.
    assert alice_client.delete(f"/api/orders/{order_id}").status_code == 202
    # The compensation's step times out before anything answers: the saga sends it again.
    assert sweep_timeouts(now=timezone.now() + timedelta(hours=1)) == 1
    assert _pending(order_id, "payments.ProcessPayment"), "the original request is still on its way"
    # The original request fails (tok_flaky's first call); every later message must not charge.
    settle()
    order = assert_money_right(alice_client, order_id)
    assert order["status"] == "CANCELLED"
    status, _, _ = ledger(order_id)
    assert status != "CAPTURED", "a cancelled order was charged"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT charge_calls FROM {CHARGES} WHERE idempotency_key = %s", [f"order-{order_id}"]
        )
        assert cursor.fetchone()[0] == 1, "a second charge round was started while compensating"


def test_a_payment_request_arriving_after_the_cancellation_never_charges(alice_client, stocked) -> None:
    stocked("SKU-Q", 5, price="10.00")
    order_id = place(alice_client, [("SKU-Q", 1)])
    _reserve_and_ask_for_payment(order_id)
    assert alice_client.delete(f"/api/orders/{order_id}").status_code == 202
    # The outcome request overtakes the payment request (a retry queue, a redelivery).
    assert deliver(order_id, "payments.ReportPaymentOutcome") == 1
    settle()
    order = assert_money_right(alice_client, order_id)
    assert order["status"] == "CANCELLED"
    assert ledger(order_id) is None, "the gateway was called for a cancelled order"
    assert stock_of("SKU-Q") == (5, 0)


# --- 3. a capture heard while reserving, then out of stock ------------------------------------


def test_a_capture_heard_while_reserving_is_refunded_when_stock_runs_out(
    alice_client, admin_client, stocked
) -> None:
    stocked("SKU-S", 1, price="10.00")
    order_id = place(alice_client, [("SKU-S", 2)])  # more than there is
    paid = admin_client.post(
        "/api/payments/process",
        {"order_id": order_id, "amount": "20.00", "method": "card", "token": "tok_ok"},
        format="json",
    )
    assert paid.status_code == 200, paid.content
    assert deliver(order_id, "payments.PaymentProcessed") == 1  # the saga hears it while STARTED
    settle()  # then the reservation fails for lack of stock
    order = assert_money_right(alice_client, order_id)
    assert (order["status"], order["failure_reason"]) == ("FAILED", "OUT_OF_STOCK")
    assert payment_status(order_id)["status"] == "REFUNDED"


# --- 4. mark failed after a capture ----------------------------------------------------------


def test_mark_failed_is_refused_while_the_saga_holds_a_capture(alice_client, stocked) -> None:
    stocked("SKU-M", 5, price="10.00")
    order_id = place(alice_client, [("SKU-M", 1)])
    _reserve_and_ask_for_payment(order_id)
    deliver(order_id, "payments.ProcessPayment")
    deliver(order_id, "payments.PaymentProcessed")
    assert SagaInstance.objects.get(order_id=order_id).step == saga_domain.CONFIRM
    with (
        pytest.raises(saga_domain.SagaRuleViolation, match="captured and is not refunded"),
        transaction.atomic(),
    ):
        saga_handlers.decide(
            order_id,
            lambda saga, now: saga.mark_failed(admin="ops", now=now, timing=saga_handlers.timing()),
        )
    assert SagaInstance.objects.get(order_id=order_id).state == "PAYMENT_PROCESSING"
    # What the operator can do instead: force compensation, which refunds.
    with transaction.atomic():
        saga_handlers.decide(
            order_id,
            lambda saga, now: saga.force_compensation(
                admin="ops", as_cancellation=False, now=now, timing=saga_handlers.timing()
            ),
        )
    settle()
    order = assert_money_right(alice_client, order_id)
    assert (order["status"], order["failure_reason"]) == ("FAILED", "ADMIN")


# --- 5. only the answer to the saga's own command settles its step ----------------------------


def test_an_operators_partial_refund_does_not_settle_the_sagas_refund(
    alice_client, admin_client, stocked
) -> None:
    stocked("SKU-P", 5, price="30.00")
    order_id = place(alice_client, [("SKU-P", 1)])
    settle()
    assert order_of(alice_client, order_id)["status"] == "COMPLETED"
    assert alice_client.delete(f"/api/orders/{order_id}").status_code == 202  # refund + restock
    refund = admin_client.post(
        "/api/payments/refund", {"order_id": order_id, "amount": "5.00"}, format="json"
    )
    assert refund.status_code == 200, refund.content
    assert deliver(order_id, "payments.PaymentRefunded") == 1  # the operator's refund: not the saga's
    deliver(order_id, "inventory.ReleaseInventory")
    deliver(order_id, "inventory.InventoryReleased")
    assert order_of(alice_client, order_id)["status"] == "COMPLETED", (
        "the order turned terminal before its own refund ran"
    )
    settle()
    order = assert_money_right(alice_client, order_id)
    assert order["status"] == "CANCELLED"
    assert stock_of("SKU-P") == (5, 0)


def test_a_late_expiry_event_does_not_settle_the_sagas_release(alice_client, stocked) -> None:
    from inventory.handlers import expire_reservations

    stocked("SKU-E", 5, price="10.00")
    order_id = place(alice_client, [("SKU-E", 2)])
    _reserve_and_ask_for_payment(order_id)
    deliver(order_id, "payments.ProcessPayment")
    deliver(order_id, "payments.PaymentProcessed")
    # The hold expires before the confirmation arrives; its InventoryReleased is delayed.
    assert expire_reservations(now=timezone.now() + timedelta(days=1)) == 1
    deliver(order_id, "inventory.ConfirmInventory")  # sells from available stock again
    deliver(order_id, "inventory.InventoryConfirmed")
    assert order_of(alice_client, order_id)["status"] == "COMPLETED"
    assert stock_of("SKU-E") == (3, 0)
    # Cancelled after completion: refund and restock. The refund is answered first ...
    assert alice_client.delete(f"/api/orders/{order_id}").status_code == 202
    deliver(order_id, "payments.RefundPayment")
    deliver(order_id, "payments.PaymentRefunded")
    # ... then the old expiry event arrives: it answers no command of the saga.
    assert deliver(order_id, "inventory.InventoryReleased") == 1
    assert order_of(alice_client, order_id)["status"] == "COMPLETED", (
        "the order turned terminal before its sold units were restocked"
    )
    settle()
    order = assert_money_right(alice_client, order_id)
    assert order["status"] == "CANCELLED"
    assert stock_of("SKU-E") == (5, 0)


# --- 6. a lost forward command heals in seconds -----------------------------------------------


@override_settings(SAGA_RESEND_AFTER=1.0)
def test_a_lost_forward_command_is_sent_again_after_its_step_timeout(alice_client, stocked) -> None:
    stocked("SKU-N", 5, price="10.00")
    order_id = place(alice_client, [("SKU-N", 1)])
    assert lose(order_id, "inventory.ReserveInventory") == 1
    settle()
    assert order_of(alice_client, order_id)["status"] == "PENDING"
    purge_queues()  # nothing of this vhost's earlier tests waits in the queues: the pipeline drained
    # A few seconds later (well inside SAGA_TIMEOUT) the sweep sends the step again.
    assert sweep_timeouts(now=timezone.now() + timedelta(seconds=2)) == 1
    settle()
    order = assert_money_right(alice_client, order_id)
    assert order["status"] == "COMPLETED"
    assert order["saga"]["attempts"] == 0 and stock_of("SKU-N") == (4, 0)


@override_settings(SAGA_RESEND_AFTER=1.0)
def test_a_step_still_queued_behind_others_is_not_sent_again(alice_client, stocked) -> None:
    stocked("SKU-B", 5, price="10.00")
    order_id = place(alice_client, [("SKU-B", 1)])
    waiting = place(alice_client, [("SKU-B", 1)])  # its ReserveInventory waits, unsent
    assert lose(order_id, "inventory.ReserveInventory") == 1
    purge_queues()
    # Messages still wait on the way: a stalled step is not lost, sending it again adds load.
    assert _pending(waiting, "inventory.ReserveInventory")
    assert sweep_timeouts(now=timezone.now() + timedelta(seconds=2)) == 0
    assert SagaInstance.objects.get(order_id=order_id).attempts == 1
    # Once the pipeline has drained and the answer is still missing, the step is sent again.
    settle()
    assert sweep_timeouts(now=timezone.now() + timedelta(seconds=2)) == 1
    settle()
    assert order_of(alice_client, order_id)["status"] == "COMPLETED"


# --- 7. conflicting requests while compensating ----------------------------------------------


def test_cancelling_an_order_that_is_failing_answers_409(alice_client, admin_client, stocked) -> None:
    stocked("SKU-F", 5, price="10.00")
    order_id = place(alice_client, [("SKU-F", 1)], token="tok_declined")
    _reserve_and_ask_for_payment(order_id)
    deliver(order_id, "payments.ProcessPayment")
    deliver(order_id, "payments.PaymentFailed")  # compensating, release not answered yet
    assert SagaInstance.objects.get(order_id=order_id).state == "COMPENSATING"
    cancel = alice_client.delete(f"/api/orders/{order_id}")
    assert cancel.status_code == 409, cancel.content
    assert "failing" in cancel.json()["detail"]
    again = admin_client.put(
        f"/api/orders/{order_id}/status", {"status": "FAILED", "reason": "x"}, format="json"
    )
    assert again.status_code == 202, "failing a failing order again changes nothing"
    settle()
    order = assert_money_right(alice_client, order_id)
    assert (order["status"], order["failure_reason"]) == ("FAILED", "PAYMENT_DECLINED")
