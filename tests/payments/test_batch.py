"""A consumer's batch of payment commands: loaded and projected set-based, charged after commit.

The batch's payment streams are read with one statement, each command decides on the unit's
one object per payment, the projection rows are written with one statement, and every charge
the batch starts is handed over only once the whole batch has committed.
"""

from __future__ import annotations

import logging
import uuid
from functools import partial
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from eventstore.handling import handle, handle_batch
from eventstore.messages import Message
from payments.models import PaymentRecord

from .conftest import ledger_entry, stream_types
from .test_refunds_and_commands import command

pytestmark = pytest.mark.django_db


def _process(order_id: str, token: str = "tok_ok") -> Message:  # noqa: S107 - a simulator token
    return command("ProcessPayment", order_id, {"amount": "40.00", "method": "card", "token": token})


def _batch(messages: list[Message], caplog: pytest.LogCaptureFixture) -> list[str]:
    """Handle ``messages`` as one batch; its statements (no savepoints), asserting no fallback."""
    caplog.set_level(logging.INFO, logger="eventstore.handling")
    with CaptureQueriesContext(connection) as captured:
        assert handle_batch("payments", messages) == [None] * len(messages)
    assert "handling one by one" not in caplog.text, "the batch fell back to one message at a time"
    return [q["sql"] for q in captured.captured_queries if "SAVEPOINT" not in q["sql"]]


@pytest.mark.parametrize("size", [1, 50])
def test_a_batch_costs_the_same_statements_whatever_its_size(
    caplog, django_capture_on_commit_callbacks, size: int
) -> None:
    orders = [str(uuid.uuid4()) for _ in range(size)]

    with django_capture_on_commit_callbacks() as callbacks:
        statements = _batch([_process(order_id) for order_id in orders], caplog)

    # inbox, the streams read, the projection rows, the card tokens, the events
    # (PaymentRequested goes to no other context: no outbox row)
    assert len(statements) == 5, statements
    assert sum("payments_payment" in sql for sql in statements) == 1
    assert sum("payment_secret" in sql for sql in statements) == 1
    assert set(PaymentRecord.objects.filter(order_id__in=orders).values_list("status", flat=True)) == {
        "PENDING"
    }
    # one charge handed over per payment, none run before the commit
    assert _charges(callbacks) == size
    assert all(ledger_entry(order_id) is None for order_id in orders)


@pytest.mark.django_db(transaction=True)
def test_the_charges_of_a_batch_run_after_its_commit(caplog, monkeypatch) -> None:
    from payments.charge_pool import charge_pool

    orders = [str(uuid.uuid4()) for _ in range(3)]
    handed_over: list[tuple[bool, int]] = []
    run = charge_pool.run

    def spy(charge):
        # when a charge is handed over: is a transaction still open, and how many of the batch's
        # payments are stored (with none open, committed)?
        in_transaction = transaction.get_connection().in_atomic_block
        handed_over.append((in_transaction, PaymentRecord.objects.filter(order_id__in=orders).count()))
        return run(charge)

    monkeypatch.setattr(charge_pool, "run", spy)
    _batch([_process(order_id) for order_id in orders], caplog)

    assert handed_over == [(False, 3)] * 3
    for order_id in orders:
        assert stream_types(order_id) == ["PaymentRequested", "PaymentAttempted", "PaymentProcessed"]
        assert PaymentRecord.objects.get(order_id=order_id).status == "CAPTURED"


def _scenario() -> list[Message]:
    """Mixed commands, several about one payment: the same shape for each call."""
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    return [
        _process(a),
        command("RefundPayment", b, {"amount": None, "reason": "CANCELLED"}),  # nothing captured: 0.00
        _process(a),  # a second request while the first round runs: left to its runner
        command("ReportPaymentOutcome", c, {}),  # never requested
        _process(c, token="tok_declined"),
        command("ReportPaymentOutcome", a, {}),
    ]


def _state(messages: list[Message]) -> list[Any]:
    orders = list(dict.fromkeys(m.data["order_id"] for m in messages))
    rows = {
        row.order_id: (row.status, row.amount, row.attempts, row.captures, row.pending_refunds, row.version)
        for row in PaymentRecord.objects.filter(order_id__in=orders)
    }
    return [(stream_types(order_id), rows.get(order_id)) for order_id in orders]


def _charges(callbacks: list[Any]) -> int:
    """How many of these on-commit callbacks hand a charge over."""
    from payments.charge_pool import charge_pool

    return sum(isinstance(c, partial) and c.func == charge_pool.run for c in callbacks)


def test_a_batch_ends_in_the_same_state_as_its_commands_one_by_one(
    caplog, django_capture_on_commit_callbacks
) -> None:
    one_by_one, batched = _scenario(), _scenario()

    with django_capture_on_commit_callbacks() as single:
        for message in one_by_one:
            assert handle("payments", message) is True
    with django_capture_on_commit_callbacks() as together:
        _batch(batched, caplog)

    assert _state(batched) == _state(one_by_one)
    # a's round, handed over again by its repeat and by its outcome report (still in flight);
    # c was answered before it was requested, so its late request starts no charge
    assert _charges(together) == _charges(single) == 3
