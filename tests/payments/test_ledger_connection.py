"""The simulator's ledger connections: its own, few and shared in turn, replaced when closed or killed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal

import pytest
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.backends.signals import connection_created

from payments import simulator
from payments.charging import run_charge
from payments.gateway import release_idle_callers
from payments.handlers import load_payment
from payments.simulator import SimulatedGateway

from .conftest import ledger_entry

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def kept_ledger(monkeypatch) -> Iterator[list[int]]:
    """Persistent connections on (the suite's settings close them after each use); yields the
    backend pid of every ledger connection opened meanwhile, and closes them all afterwards."""
    monkeypatch.setitem(connections.settings[DEFAULT_DB_ALIAS], "CONN_MAX_AGE", None)
    opened: list[int] = []

    def on_connect(sender, connection, **kwargs) -> None:
        if connection is not connections[DEFAULT_DB_ALIAS]:
            opened.append(connection.connection.info.backend_pid)

    simulator.close_ledger()
    release_idle_callers()
    connection_created.connect(on_connect)
    try:
        yield opened
    finally:
        connection_created.disconnect(on_connect)
        simulator.close_ledger()
        release_idle_callers()


def _charge(order_id: str) -> bool:
    key = f"order-{order_id}"
    return SimulatedGateway().charge(idempotency_key=key, amount=Decimal("10.00"), token="tok_ok").captured


def _alive(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone()[0] == 1


def test_one_connection_serves_many_calls_of_a_thread(kept_ledger, new_order_id):
    orders = [new_order_id() for _ in range(5)]
    for order_id in orders:
        assert _charge(order_id)
    assert SimulatedGateway().status(idempotency_key=f"order-{orders[0]}").captured
    assert len(kept_ledger) == 1
    assert all(ledger_entry(order_id).charge_calls == 1 for order_id in orders)


def test_the_ledger_stays_a_connection_of_its_own(kept_ledger, new_order_id):
    # given: a reused ledger connection
    assert _charge(new_order_id())
    # when: a charge runs inside a caller's transaction that rolls back
    order_id = new_order_id()
    with pytest.raises(RuntimeError), transaction.atomic():
        assert _charge(order_id)
        raise RuntimeError("the caller's transaction fails")
    # then: the capture stands
    assert ledger_entry(order_id).status == "CAPTURED"


def test_a_killed_connection_is_replaced_and_the_next_charge_works(kept_ledger, new_order_id):
    assert _charge(new_order_id())
    [pid] = kept_ledger
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    # when: the next charge of this thread
    order_id = new_order_id()
    assert _charge(order_id)
    # then: on a new connection, and captured once
    assert len(kept_ledger) == 2 and kept_ledger[1] != pid
    assert ledger_entry(order_id).charge_calls == 1


def test_a_dead_connection_not_seen_before_the_call_is_retried_once_on_a_new_one(
    kept_ledger, new_order_id, monkeypatch
):
    # given: the server dropped the idle connection, and the look at its socket misses it
    assert _charge(new_order_id())
    [pid] = kept_ledger
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
    assert not _alive(pid)
    monkeypatch.setattr(simulator, "_broken", lambda db: False)
    # when
    order_id = new_order_id()
    assert _charge(order_id)
    # then: the first statement failed on the dead connection, the call ran on a new one, once
    assert len(kept_ledger) == 2
    assert ledger_entry(order_id).charge_calls == 1


def test_a_connection_closed_under_it_is_replaced(kept_ledger, new_order_id):
    assert _charge(new_order_id())
    [db] = simulator._connections.idle
    db.connection.close()  # closed behind Django's back
    order_id = new_order_id()
    assert _charge(order_id)
    assert len(kept_ledger) == 2
    assert ledger_entry(order_id).status == "CAPTURED"


def test_refunds_keep_the_reused_connection_in_autocommit(kept_ledger, new_order_id):
    order_id = new_order_id()
    gateway = SimulatedGateway()
    key = f"order-{order_id}"
    assert _charge(order_id)
    assert gateway.refund(idempotency_key=key, refund_key="r1", amount=Decimal("4.00")) == Decimal("4.00")
    assert gateway.refund(idempotency_key=key, refund_key="r1", amount=Decimal("4.00")) == Decimal("4.00")
    with pytest.raises(simulator.RefundRejected):
        gateway.refund(idempotency_key=key, refund_key="r2", amount=Decimal("7.00"))
    # the rejected refund rolled back its own transaction only; the connection is back in autocommit
    assert all(db.get_autocommit() for db in simulator._connections.idle)
    assert _charge(new_order_id())
    assert len(kept_ledger) == 1
    assert ledger_entry(order_id).refunded_amount == Decimal("4.00")


def test_charges_through_the_runner_survive_killed_ledger_connections(kept_ledger, requested):
    # given: charges ran, the ledger's connections are kept
    for _ in range(3):
        assert run_charge(order_id=requested("tok_ok")).status == "CAPTURED"
    assert kept_ledger
    # when: every ledger connection is killed
    with connection.cursor() as cursor:
        for pid in kept_ledger:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    # then: the next charges still capture, once each
    for _ in range(3):
        order_id = requested("tok_ok")
        payment = run_charge(order_id=order_id)
        assert (payment.status, payment.attempts, payment.captures) == ("CAPTURED", 1, 1)
        assert load_payment(order_id).captures == 1
        assert ledger_entry(order_id).charge_calls == 1


def test_without_persistent_connections_the_ledger_is_closed_after_each_call(new_order_id):
    # The suite's settings (CONN_MAX_AGE = 0): nothing is left open between calls.
    assert connections.settings[DEFAULT_DB_ALIAS]["CONN_MAX_AGE"] == 0
    assert _charge(new_order_id())
    assert all(db.connection is None for db in simulator._connections.idle)


def test_many_threads_calling_at_once_share_at_most_the_configured_connections(
    kept_ledger, new_order_id, settings
):
    # given: two ledger connections for the process, and twelve callers at once
    settings.PAYMENT_LEDGER_CONNECTIONS = 2
    orders = [new_order_id() for _ in range(12)]
    start = threading.Barrier(len(orders))
    captured: list[bool] = []

    def call(order_id: str) -> None:
        start.wait()
        captured.append(_charge(order_id))

    threads = [threading.Thread(target=call, args=(order_id,)) for order_id in orders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # then: every charge captured once, on no more than two connections
    assert captured == [True] * len(orders)
    assert 1 <= len(kept_ledger) <= 2
    assert all(ledger_entry(order_id).charge_calls == 1 for order_id in orders)
