"""The sagas consumer's batches: a few statements per table whatever the batch size, the same
outcome as one message at a time, and no deadlock between batches about the same sagas.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from django.db import DataError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from eventstore import sql as eventstore_sql
from eventstore.handling import handle, handle_batch
from eventstore.messages import Message
from eventstore.store import load_stream
from eventstore.unit_of_work import unit_of_work
from orders.handlers import load_order
from sagas import handlers as saga_handlers
from sagas import public as sagas_public
from sagas import recorder as sagas_recorder
from sagas.models import SagaInstance, SagaStepAttempt, SagaTransition

from .conftest import answer

RESERVED = {"items": [], "expires_at": "2099-01-01T00:00:00Z"}
PROCESSED = {"payment_id": "p", "amount": "28.00", "attempts": 1}


@pytest.fixture(params=["postgresql", "portable"])
def recorders(request, monkeypatch) -> str:
    """Each test twice: with the PostgreSQL recorders, and with the portable ones (as on SQLite)."""
    if request.param == "portable":
        monkeypatch.setattr(sagas_recorder, "_recorder", sagas_recorder.PortableRecorder())
        monkeypatch.setattr(eventstore_sql, "_dialect", eventstore_sql.Dialect())
    return request.param


def _tables(sql: str) -> tuple[str, ...]:
    verb = sql.split(None, 1)[0].upper()
    if verb in ("SAVEPOINT", "RELEASE", "ROLLBACK"):
        return (verb,)
    tables = sorted(set(re.findall(r'(?:FROM|INTO|UPDATE)\s+"?(\w+)\b"?(?!\()', sql)))
    return (verb, *tables)


def _per_table(action: Callable[[], Any]) -> Counter[tuple[str, ...]]:
    with CaptureQueriesContext(connection) as captured:
        action()
    return Counter(_tables(query["sql"]) for query in captured.captured_queries)


def _run_saga_steps(orders: list[str]) -> list[Counter[tuple[str, ...]]]:
    """Feed each step's answers of all ``orders`` as one batch; the statements of each batch."""
    costs = []
    for message_type, data in (
        ("InventoryReserved", RESERVED),
        ("PaymentProcessed", PROCESSED),
        ("InventoryConfirmed", {"items": []}),
    ):
        batch = [answer(message_type, order_id, **data) for order_id in orders]
        costs.append(_per_table(lambda batch=batch: _handled(batch)))
    return costs


def _handled(batch: list[Message]) -> None:
    assert handle_batch("sagas", batch) == [None] * len(batch)


@pytest.mark.django_db
def test_a_batch_of_answers_costs_the_same_statements_per_table_for_1_and_for_50_sagas(placed_order) -> None:
    # given one order, and fifty others, whose sagas wait for their stock
    one = [placed_order()]
    fifty = [placed_order() for _ in range(50)]

    # when each step's answers come as one batch (reserved: the order changes; processed: it
    # does not; confirmed: it completes)
    single = _run_saga_steps(one)
    many = _run_saga_steps(fifty)

    # then every batch costs the same statements, table by table, whatever its size
    assert single == many
    reserved, processed, confirmed = many
    # the sagas are locked together, the orders read together, and only when an order changes
    assert reserved[("INSERT", "event_inbox")] == 1
    assert reserved[("SELECT", "saga_instance")] == 1
    assert reserved[("SELECT", "event_store")] == 1
    assert processed[("SELECT", "event_store")] == 0
    assert confirmed[("SELECT", "event_store")] == 1
    # every saga write of a batch is one statement (rows, settled attempts, transitions, attempts)
    assert reserved[("WITH", "saga_instance", "saga_step_attempt", "saga_transition")] == 1
    assert sum(reserved.values()) <= 9, reserved
    assert {load_order(order_id).status for order_id in one + fifty} == {"COMPLETED"}
    assert set(SagaStepAttempt.objects.values_list("outcome", flat=True)) == {SagaStepAttempt.SUCCEEDED}
    assert SagaStepAttempt.objects.filter(saga_id=fifty[7]).count() == 3


def _state(order_id: str) -> dict[str, Any]:
    """What the saga, its logs and the order's and saga's streams hold (times and ids left out)."""
    saga = SagaInstance.objects.get(order_id=order_id)
    row = {
        name: getattr(saga, name)
        for name in (
            "state",
            "step",
            "attempts",
            "needs_attention",
            "failure_reason",
            "outcome",
            "cancelled_by",
            "reserved",
            "payment_requested",
            "captured",
            "confirmed",
            "pending",
            "order_status",
            "refunded",
            "version",
        )
    }
    row["waiting_steps"] = sorted(saga.commands)
    return {
        "saga": row,
        "transitions": list(
            SagaTransition.objects.filter(saga=saga).values_list("from_state", "to_state", "step", "reason")
        ),
        "attempts": list(
            SagaStepAttempt.objects.filter(saga=saga).values_list(
                "step", "command", "attempt", "outcome", "answer", "error"
            )
        ),
        "order": [(m.type, m.version, m.data.get("status")) for m in load_stream(order_id)],
        "saga_events": [(m.type, m.version) for m in load_stream(f"saga-{order_id}")],
    }


@pytest.mark.django_db
def test_two_answers_about_one_saga_in_a_batch_end_as_when_handled_one_by_one(
    placed_order, recorders
) -> None:
    # given two orders in the same state: reserved, paying, then cancelled (releasing the stock
    # and waiting for the payment's outcome)
    orders = [placed_order(), placed_order()]
    for order_id in orders:
        handle("sagas", answer("InventoryReserved", order_id, **RESERVED))
        sagas_public.request_cancellation(order_id=order_id, by="alice", reason="changed my mind")
    answers = {
        order_id: [
            answer("InventoryReleased", order_id, items=[], reason="CANCELLED", restocked=True),
            # the payment went through after all: it must be refunded before the order ends
            answer("PaymentProcessed", order_id, **PROCESSED),
        ]
        for order_id in orders
    }
    batched, one_by_one = orders

    # when one order's two answers come in one batch, and the other's one at a time
    assert handle_batch("sagas", answers[batched]) == [None, None]
    for message in answers[one_by_one]:
        assert handle("sagas", message)

    # then both end in the same state: the second answer saw the first one's effects
    assert _state(batched) == _state(one_by_one)
    state = _state(batched)
    assert (state["saga"]["state"], state["saga"]["step"]) == ("COMPENSATING", "REFUND_PAYMENT")
    assert state["attempts"][-1][:4] == ("REFUND_PAYMENT", "RefundPayment", 1, "PENDING")
    assert ("RELEASE_INVENTORY", "ReleaseInventory", 1, "SUCCEEDED", "InventoryReleased", "") in state[
        "attempts"
    ]


@pytest.mark.django_db
def test_answers_about_a_saga_missing_or_handled_before_change_nothing_in_a_batch(
    placed_order, recorders
) -> None:
    order_id = placed_order()
    reserved = answer("InventoryReserved", order_id, **RESERVED)
    handle("sagas", reserved)
    before = _state(order_id)
    stranger = answer("InventoryReserved", "no-such-order", causation_id="", **RESERVED)

    assert handle_batch("sagas", [reserved, stranger]) == [None, None]

    assert _state(order_id) == before


def _retry(order_id: str) -> None:
    saga_handlers.decide(
        order_id, lambda saga, now: saga.retry_step(admin="ops", now=now, timing=saga_handlers.timing())
    )


def _attempts(order_id: str) -> list[tuple[str, int, str]]:
    return list(
        SagaStepAttempt.objects.filter(saga_id=order_id)
        .order_by("id")
        .values_list("step", "attempt", "outcome")
    )


@pytest.mark.django_db
def test_attempts_recorded_in_one_unit_are_numbered_in_turn(placed_order, recorders) -> None:
    # given a saga waiting for its stock
    order_id = placed_order()

    # when its step is sent again twice in one unit of work, then answered in the same unit
    with unit_of_work():
        _retry(order_id)
        _retry(order_id)
        saga_handlers.react(answer("InventoryReservationFailed", order_id, reason="OUT_OF_STOCK"))

    # then the attempts are numbered after the stored one, and the answer settled all of them
    assert _attempts(order_id) == [("RESERVE_INVENTORY", n, "FAILED") for n in (1, 2, 3)]
    assert load_order(order_id).status == "FAILED"
    saga = SagaInstance.objects.get(order_id=order_id)
    assert (saga.state, saga.version) == ("FAILED", len(load_stream(f"saga-{order_id}")))


@pytest.mark.django_db
def test_a_saga_started_and_changed_in_one_unit_is_stored_once_as_it_ended(products, recorders) -> None:
    from orders.handlers import RequestedLine, place_order

    # when an order is placed and its saga's step sent again in the same unit of work
    with unit_of_work():
        order_id = place_order(
            customer_id="alice", lines=[RequestedLine("SKU-A", 1)], payment={"method": "card", "token": "t"}
        ).order_id
        _retry(order_id)

    # then the saga row holds the later state, and both attempts are numbered from one
    saga = SagaInstance.objects.get(order_id=order_id)
    assert (saga.state, saga.attempts, saga.version) == ("STARTED", 2, 2)
    assert _attempts(order_id) == [("RESERVE_INVENTORY", 1, "PENDING"), ("RESERVE_INVENTORY", 2, "PENDING")]
    assert [m.type for m in load_stream(f"saga-{order_id}")] == ["SagaStarted", "SagaStepRetried"]


@pytest.mark.django_db(transaction=True)
def test_two_batches_about_the_same_sagas_in_opposite_orders_do_not_deadlock(placed_order, caplog) -> None:
    # given twenty sagas, and one of them (in the middle) locked by someone else for a moment
    orders = [placed_order() for _ in range(20)]
    middle = sorted(orders)[10]
    batches = [
        [answer("InventoryReserved", order_id, **RESERVED) for order_id in orders],
        [answer("InventoryReserved", order_id, **RESERVED) for order_id in reversed(orders)],
    ]
    outcomes: list[list[BaseException | None]] = []
    errors: list[BaseException] = []

    def consume(batch: list[Message]) -> None:
        try:
            outcomes.append(handle_batch("sagas", batch))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    caplog.set_level("INFO", logger="eventstore.handling")
    holder = connections.create_connection("default")
    try:
        with holder.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("SELECT 1 FROM saga_instance WHERE order_id = %s FOR UPDATE", [middle])
            # when both batches run, each waiting for that row halfway through its sagas
            threads = [threading.Thread(target=consume, args=(batch,)) for batch in batches]
            for thread in threads:
                thread.start()
            _wait_for_lock_waiters(2)
            cursor.execute("COMMIT")
        for thread in threads:
            thread.join(timeout=60)
    finally:
        holder.close()

    # then both finish as batches (no deadlock, no fall back to one message at a time)
    assert not errors
    assert outcomes == [[None] * 20, [None] * 20]
    assert "handling one by one" not in caplog.text
    # each saga advanced once; the other batch's copy of its answer was a stale one
    assert {load_order(order_id).status for order_id in orders} == {"PAYMENT_PROCESSING"}
    ignored = {
        order_id: [m.type for m in load_stream(f"saga-{order_id}")].count("SagaAnswerIgnored")
        for order_id in orders
    }
    assert set(ignored.values()) == {1}


def _wait_for_lock_waiters(count: int) -> None:
    """Until ``count`` sessions wait for a row lock (both batches reached the held saga)."""
    deadline = time.monotonic() + 30
    with connections["default"].cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT COUNT(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            if cursor.fetchone()[0] >= count:
                return
            time.sleep(0.05)
    raise AssertionError("the batches never waited for the held saga")


@pytest.mark.django_db
def test_a_value_too_long_for_its_column_is_refused_not_cut(placed_order) -> None:
    order_id = placed_order()
    with pytest.raises(DataError), transaction.atomic():
        sagas_public.request_cancellation(order_id=order_id, by="alice", reason="x" * 501)
    assert SagaInstance.objects.get(order_id=order_id).cancel_reason == ""


@pytest.mark.django_db
def test_the_new_sagas_of_one_unit_are_written_with_one_statement(products) -> None:
    from orders.handlers import RequestedLine, place_order

    def place(count: int) -> Counter[tuple[str, ...]]:
        def placing() -> None:
            with unit_of_work():
                for _ in range(count):
                    place_order(
                        customer_id="alice",
                        lines=[RequestedLine("SKU-A", 1)],
                        payment={"method": "card", "token": "tok_ok"},
                    )

        return _per_table(placing)

    one, twenty = place(1), place(20)
    saga_writes = [key for key in twenty if {"saga_instance", "saga_step_attempt"} & set(key[1:])]
    assert saga_writes == [("WITH", "saga_instance", "saga_step_attempt")]
    assert one[saga_writes[0]] == twenty[saga_writes[0]] == 1
    assert SagaInstance.objects.count() == 21
    assert set(SagaStepAttempt.objects.values_list("step", "attempt")) == {("RESERVE_INVENTORY", 1)}
