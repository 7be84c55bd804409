"""Charges on the consumer process's pool: off the consumer's thread, bounded, drained on a graceful stop."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from django.db import DEFAULT_DB_ALIAS, connections

from eventstore.handling import handle
from eventstore.publisher import ConfirmingPublisher, Envelope
from eventstore.topology import broker_connection
from payments.charge_pool import QUEUED_PER_WORKER, ChargePool, charge_pool
from payments.models import GatewayCharge, PaymentRecord
from tests.fixtures.stack import Stack

from .test_refunds_and_commands import process

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pool() -> Iterator[ChargePool]:
    """The process's charge pool, started as ``manage.py consume`` starts it, and stopped after."""
    assert not charge_pool.running
    charge_pool.start(workers=2)
    try:
        yield charge_pool
    finally:
        charge_pool.stop(timeout=10)


def _status(order_id: str) -> str:
    row = PaymentRecord.objects.filter(pk=order_id).first()
    return row.status if row else ""


def _wait(predicate, timeout: float = 20.0) -> None:
    from django.db import close_old_connections

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        close_old_connections()
        time.sleep(0.02)


# --- in this process ------------------------------------------------------------------------


def test_without_a_pool_the_charge_runs_inline_after_commit(new_order_id):
    order_id = new_order_id()
    handle("payments", process(order_id))
    assert _status(order_id) == "CAPTURED"


def test_a_slow_charge_runs_on_the_pool_and_does_not_hold_up_the_next_message(pool, new_order_id, settings):
    settings.PAYMENT_TIMEOUT = 2.0
    slow, quick = new_order_id(), new_order_id()
    # when: the consumer's thread handles a tok_slow command, then another one
    handle("payments", process(slow, token="tok_slow"))
    # then: it is back before the slow charge could answer (at least PAYMENT_TIMEOUT)
    assert _status(slow) in ("PENDING", "UNKNOWN")
    handle("payments", process(quick))
    # and the second charge lands while the slow one still waits for the gateway
    _wait(lambda: _status(quick) == "CAPTURED")
    assert _status(slow) in ("PENDING", "UNKNOWN")
    # when the pool is drained, the slow one is settled from the ledger, captured once
    assert pool.stop(timeout=10) == 0
    assert _status(slow) == "CAPTURED"
    assert GatewayCharge.objects.get(idempotency_key=f"order-{slow}").charge_calls == 1


def test_a_full_pool_blocks_the_submitter_and_drops_nothing():
    pool = ChargePool()
    pool.start(workers=1)
    gate = threading.Event()
    ran: list[int] = []
    capacity = QUEUED_PER_WORKER  # queued, besides the one running

    def charge(n: int):
        return lambda: (gate.wait(10), ran.append(n))

    submitted: list[int] = []

    def submit_all() -> None:
        for n in range(capacity + 3):
            pool.run(charge(n))
            submitted.append(n)

    submitter = threading.Thread(target=submit_all)
    submitter.start()
    # one running + `capacity` queued, and the submitter waits for room
    _wait(lambda: len(submitted) == capacity + 1, timeout=5)
    time.sleep(0.2)
    assert len(submitted) == capacity + 1 and submitter.is_alive()
    gate.set()
    submitter.join(timeout=10)
    assert pool.stop(timeout=10) == 0
    assert sorted(ran) == list(range(capacity + 3))


def test_stop_waits_for_the_charges_in_hand_up_to_its_timeout():
    pool = ChargePool()
    pool.start(workers=2)
    done: list[int] = []
    for n in range(6):
        pool.run(lambda n=n: (time.sleep(0.05), done.append(n)))
    assert pool.stop(timeout=10) == 0
    assert sorted(done) == list(range(6))
    # a charge that outlasts the stop's timeout is left (its payment stays PENDING for the resume task)
    pool.start(workers=1)
    release = threading.Event()
    pool.run(lambda: release.wait(10))
    pool.run(lambda: None)
    assert pool.stop(timeout=0.2) == 2
    release.set()
    # once stopped, charges run inline again
    inline: list[str] = []
    pool.run(lambda: inline.append(threading.current_thread().name))
    assert inline == [threading.current_thread().name]


def test_a_quiet_pool_runs_each_charge_on_the_thread_idle_last():
    # One charge at a time, each after the last ended: the same thread takes every one, so
    # its open connections serve them all (the longest idle thread would take each in turn,
    # and open a connection of its own first).
    pool = ChargePool()
    pool.start(workers=8)
    threads: list[str] = []
    try:
        for _ in range(12):
            ended = threading.Event()
            pool.run(lambda ended=ended: (threads.append(threading.current_thread().name), ended.set()))
            assert ended.wait(5)
            _wait(lambda: pool._busy == 0, timeout=5)
    finally:
        assert pool.stop(timeout=10) == 0
    assert len(threads) == 12 and len(set(threads)) == 1


def test_charges_in_parallel_still_spread_over_the_threads():
    pool = ChargePool()
    pool.start(workers=4)
    gate = threading.Event()
    threads: set[str] = set()
    started = threading.Semaphore(0)

    def charge() -> None:
        threads.add(threading.current_thread().name)
        started.release()
        gate.wait(10)

    try:
        for _ in range(4):
            pool.run(charge)
        # every charge runs at once, each on its own thread
        for _ in range(4):
            assert started.acquire(timeout=5)
        assert len(threads) == 4
    finally:
        gate.set()
        assert pool.stop(timeout=10) == 0


def test_pool_threads_use_their_own_connection_and_close_it_when_they_end(monkeypatch, requested):
    monkeypatch.setitem(connections.settings[DEFAULT_DB_ALIAS], "CONN_MAX_AGE", None)
    main = connections[DEFAULT_DB_ALIAS]
    seen: list[object] = []

    def charge() -> None:
        from payments.charging import run_charge

        run_charge(order_id=order_id)
        seen.append(connections[DEFAULT_DB_ALIAS])

    order_id = requested("tok_ok")
    pool = ChargePool()
    pool.start(workers=1)
    pool.run(charge)
    _wait(lambda: bool(seen))
    assert seen[0] is not main
    assert seen[0].connection is not None  # kept between charges (persistent connections)
    pool.stop(timeout=10)
    assert seen[0].connection is None  # closed as the thread ended
    assert _status(order_id) == "CAPTURED"


# --- a real `manage.py consume` process ------------------------------------------------------------


def _publish_process_payment(*orders: tuple[str, str]) -> None:
    envelopes = []
    for n, (order_id, token) in enumerate(orders):
        message_id = str(uuid.uuid4())
        body = {
            "message_id": message_id,
            "kind": "command",
            "type": "ProcessPayment",
            "aggregate_type": "payment",
            "aggregate_id": f"payment-{order_id}",
            "version": None,
            "position": None,
            "occurred_at": "2026-01-01T00:00:00Z",
            "correlation_id": order_id,
            "causation_id": str(uuid.uuid4()),
            "data": {"order_id": order_id, "amount": "12.00", "method": "card", "token": token},
        }
        envelopes.append(
            Envelope(
                key=n,
                exchange="oms.commands",
                routing_key="payments.ProcessPayment",
                body=json.dumps(body).encode(),
                message_id=message_id,
            )
        )
    publisher = ConfirmingPublisher(broker_connection())
    try:
        assert publisher.publish(envelopes) == {}
    finally:
        publisher.close()


@pytest.mark.stack
def test_the_consumer_goes_on_while_a_slow_charge_runs(stack_factory: Stack, new_order_id):
    stack_factory.start_consumer("payments", PAYMENT_TIMEOUT="3", PAYMENT_CHARGE_WORKERS="4")
    slow, quick = new_order_id(), new_order_id()
    _publish_process_payment((slow, "tok_slow"), (quick, "tok_ok"))
    stack_factory.wait_until(lambda: _status(quick) == "CAPTURED", message="the quick payment captured")
    # inline, the quick charge would have waited for the slow one to be settled
    assert _status(slow) in ("PENDING", "UNKNOWN")
    stack_factory.wait_until(lambda: _status(slow) == "CAPTURED", message="the slow payment captured")


@pytest.mark.stack
def test_a_graceful_stop_drains_the_pool(stack_factory: Stack, new_order_id):
    consumer = stack_factory.start_consumer("payments", PAYMENT_TIMEOUT="1", PAYMENT_CHARGE_WORKERS="4")
    orders = [new_order_id() for _ in range(4)]
    _publish_process_payment(*((order_id, "tok_slow") for order_id in orders))
    stack_factory.wait_until(
        lambda: PaymentRecord.objects.filter(pk__in=orders).count() == len(orders), message="all requested"
    )
    assert PaymentRecord.objects.filter(pk__in=orders, status__in=["PENDING", "UNKNOWN"]).exists()
    # when: SIGTERM while the charges run
    assert consumer.stop(timeout=15) == 0
    # then: every charge was finished before the process exited, none left for the resume task
    statuses = dict(PaymentRecord.objects.filter(pk__in=orders).values_list("order_id", "status"))
    assert statuses == dict.fromkeys(orders, "CAPTURED"), consumer.log()[-3000:]
    assert GatewayCharge.objects.filter(idempotency_key__in=[f"order-{o}" for o in orders]).count() == 4
    assert "still running" not in consumer.log()
