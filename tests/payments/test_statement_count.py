"""What one tok_ok charge costs in SQL statements and new connections (every thread counted)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.signals import connection_created
from django.db.backends.utils import CursorWrapper

from payments import simulator
from payments.charging import run_charge
from payments.gateway import release_idle_callers

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class Cost:
    statements: list[str] = field(default_factory=list)
    ledger_statements: list[str] = field(default_factory=list)
    connects: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def cost(monkeypatch) -> Iterator[Cost]:
    counted = Cost()
    original = CursorWrapper._execute_with_wrappers

    def counting(self, sql, params, many, executor):
        with counted.lock:
            ledger = self.db is not connections[DEFAULT_DB_ALIAS]
            (counted.ledger_statements if ledger else counted.statements).append(sql)
        return original(self, sql, params, many, executor)

    def on_connect(sender, connection, **kwargs) -> None:
        with counted.lock:
            counted.connects += 1

    simulator.close_ledger()  # the connections left by earlier tests are not counted
    monkeypatch.setattr(CursorWrapper, "_execute_with_wrappers", counting)
    connection_created.connect(on_connect)
    try:
        yield counted
    finally:
        connection_created.disconnect(on_connect)


def _measure(cost: Cost, requested, runs: int = 3) -> tuple[float, float, float]:
    run_charge(order_id=requested("tok_ok"))  # warm: connections, breaker script
    orders = [requested("tok_ok") for _ in range(runs)]
    cost.statements.clear()
    cost.ledger_statements.clear()
    cost.connects = 0
    for order_id in orders:
        assert run_charge(order_id=order_id).status == "CAPTURED"
    return len(cost.statements) / runs, len(cost.ledger_statements) / runs, cost.connects / runs


def test_a_charge_with_persistent_connections(cost, requested, monkeypatch):
    monkeypatch.setitem(connections.settings[DEFAULT_DB_ALIAS], "CONN_MAX_AGE", None)
    try:
        statements, ledger, connects = _measure(cost, requested)
    finally:
        simulator.close_ledger()
        release_idle_callers()
    print(f"\npersistent: {statements} app / {ledger} ledger statements, {connects} connects per charge")
    # claim (which reads the card token), load; one transaction: append events, outbox, project
    # (which releases the claim), delete the card token
    assert statements <= 6
    # the ledger: one upsert that counts the call and captures, on a kept connection
    assert ledger == 1
    assert connects == 0


def test_a_charge_with_the_suites_settings(cost, requested):
    statements, ledger, connects = _measure(cost, requested)
    print(f"\nCONN_MAX_AGE=0: {statements} app / {ledger} ledger statements, {connects} connects per charge")
    assert statements <= 6
    assert ledger == 1
    assert connects == 1  # the ledger's, closed after the call as the settings ask


def test_a_charge_handed_the_state_its_request_stored(cost, requested):
    """As the ProcessPayment handler runs it: the claim confirms the state, no load at all."""
    from payments.handlers import load_payment

    run_charge(order_id=requested("tok_ok"))  # warm
    known = [load_payment(requested("tok_ok")) for _ in range(3)]
    cost.statements.clear()
    for payment in known:
        assert run_charge(order_id=payment.order_id, payment=payment).status == "CAPTURED"
    print(f"\nhanded over: {len(cost.statements) / 3} app statements per charge")
    # claim (returning the version and the card token); one transaction: append events, outbox,
    # project + release, delete the card token
    assert len(cost.statements) / 3 == 5
