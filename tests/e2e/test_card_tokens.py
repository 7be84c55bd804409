"""No card token in the event log (issue 14), order by order through the whole saga.

A completed, a declined and a late (outcome unknown at first) order each run through the HTTP
API, the outbox, the in-process bus, the saga, payments and the simulator on PostgreSQL. While
the charge may still run, the token is held by payments (``payment_secret``) and by the saga
row; once the payment is settled, by neither — and at no moment by any row of ``event_store``.
The ProcessPayment command names the order's customer, which is how payments lets the owner
(and no one else) read the payment.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from django.db import connection
from django.test import override_settings

from eventstore.models import OutboxMessage
from payments.charge_pool import charge_pool
from payments.models import PaymentSecret
from sagas.models import SagaInstance

from .conftest import order_of, place, settle
from .test_money_interleavings import _reserve_and_ask_for_payment, assert_money_right, deliver

pytestmark = pytest.mark.django_db(transaction=True)


def _events_containing(text: str) -> list[str]:
    """The event_store rows whose text (every column, the JSON data included) contains ``text``."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT e.event_type FROM event_store e WHERE CAST(e AS text) LIKE %s", [f"%{text}%"])
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.parametrize(
    ("token", "status", "reason"),
    [
        (f"tok_card_{uuid.uuid4().hex}", "COMPLETED", None),  # any other token captures
        ("tok_declined", "FAILED", "PAYMENT_DECLINED"),
        ("tok_late", "COMPLETED", None),  # captured after the caller's timeout: UNKNOWN first
    ],
    ids=["completed", "declined", "late"],
)
@override_settings(PAYMENT_TIMEOUT=0.2, PAYMENT_RETRY_BACKOFF=0.05)
def test_no_event_ever_carries_the_card_token(
    alice_client, bob_client, stocked, monkeypatch, token: str, status: str, reason: str | None
) -> None:
    stocked("SKU-TOK", 5, price="12.00")
    order_id = place(alice_client, [("SKU-TOK", 1)], token=token)
    _reserve_and_ask_for_payment(order_id)
    assert SagaInstance.objects.get(order_id=order_id).payment_token == token  # it may still pay
    command = OutboxMessage.objects.get(routing_key="payments.ProcessPayment", body__correlation_id=order_id)
    assert command.body["data"]["customer_id"] == "alice"

    # The ProcessPayment handler commits; its charge is held back to look at the state between.
    charges: list[Callable[[], object]] = []
    with monkeypatch.context() as patched:
        patched.setattr(charge_pool, "run", charges.append)
        assert deliver(order_id, "payments.ProcessPayment") == 1
    assert len(charges) == 1
    secret = PaymentSecret.objects.get(pk=order_id)
    assert secret.token == token and secret.reference.startswith("pmref_")
    assert _events_containing(token) == []

    charges[0]()
    settle()

    order = assert_money_right(alice_client, order_id)
    assert (order["status"], order["failure_reason"]) == (status, reason)
    assert _events_containing(token) == [], "a card token was written to the append-only log"
    assert not PaymentSecret.objects.filter(pk=order_id).exists()
    assert SagaInstance.objects.get(order_id=order_id).payment_token == ""
    # ownership, from the customer the saga's command named
    assert alice_client.get(f"/api/payments/{order_id}").status_code == 200
    assert bob_client.get(f"/api/payments/{order_id}").status_code == 404


def test_an_order_that_never_reaches_payment_forgets_its_token(alice_client, stocked) -> None:
    stocked("SKU-NONE", 1)
    token = f"tok_card_{uuid.uuid4().hex}"
    order_id = place(alice_client, [("SKU-NONE", 2)], token=token)  # more than there is
    settle()
    assert order_of(alice_client, order_id)["status"] == "FAILED"
    assert SagaInstance.objects.get(order_id=order_id).payment_token == ""
    assert _events_containing(token) == []
    assert not PaymentSecret.objects.filter(pk=order_id).exists()


def test_an_operators_charge_before_the_saga_asks_names_the_orders_customer(
    alice_client, bob_client, admin_client, stocked
) -> None:
    """The operator's charge comes first: payments asks the order directory whose order it is."""
    stocked("SKU-OP", 3, price="8.00")
    saga_token, operator_token = (f"tok_card_{uuid.uuid4().hex}" for _ in range(2))
    order_id = place(alice_client, [("SKU-OP", 1)], token=saga_token)
    charge = {"order_id": order_id, "amount": "8.00", "method": "card", "token": operator_token}
    assert admin_client.post("/api/payments/process", charge, format="json").status_code == 200
    assert alice_client.get(f"/api/payments/{order_id}").status_code == 200
    assert bob_client.get(f"/api/payments/{order_id}").status_code == 404
    assert not PaymentSecret.objects.filter(pk=order_id).exists()

    settle()  # the saga's own ProcessPayment is answered with the capture: no second charge
    order = assert_money_right(alice_client, order_id)
    assert order["status"] == "COMPLETED"
    assert SagaInstance.objects.get(order_id=order_id).payment_token == ""
    assert _events_containing(saga_token) == _events_containing(operator_token) == []
