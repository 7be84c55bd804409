"""``manage.py audit_money``: a clean history passes; each kind of damage is reported and fails it.

The damage is done by direct writes to the tables of the context concerned, as a bug or an
operator's mistake would leave them.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from config.audit.money import KINDS
from tests.e2e.conftest import place, settle

from .conftest import CleanSet

ROOT = Path(__file__).resolve().parents[2]


def audit(*args: str) -> tuple[int, dict[str, Any]]:
    """Run ``audit_money --json``: (exit status, the JSON document)."""
    out = io.StringIO()
    try:
        call_command("audit_money", "--json", *args, stdout=out)
        status = 0
    except SystemExit as exc:
        status = int(exc.code or 0)
    return status, json.loads(out.getvalue())


def sql(statement: str, *params: Any) -> int:
    """Run one statement; the number of rows it touched."""
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.rowcount


def kinds(report: dict[str, Any]) -> set[str]:
    return {item["kind"] for item in report["discrepancies"]}


def test_a_clean_history_passes(clean_set: CleanSet) -> None:
    status, report = audit()

    assert status == 0, report["discrepancies"]
    assert report["ok"] is True and report["discrepancies"] == []
    assert report["totals"] == {
        "orders": 4,
        "settled": 4,
        "in_progress": 0,
        "products": 2,
        "dead_letters_pending": 0,
        "discrepancies": 0,
    }
    assert report["by_kind"] == dict.fromkeys(KINDS, 0)
    assert report["since"] is None and report["grace_seconds"] == 10.0


def test_the_text_output_is_one_summary_line_when_clean(clean_set: CleanSet) -> None:
    out = io.StringIO()
    call_command("audit_money", stdout=out)

    assert out.getvalue().splitlines() == [
        "audit_money OK: no discrepancy - 4 orders (4 settled, 0 in progress), 2 products, "
        "0 dead letters pending"
    ]


def _ledger(order_id: str) -> str:
    return f"order-{order_id}"


def _unrefund(order_id: str) -> None:
    sql(
        "UPDATE payments_gateway_charge SET refunded_amount = 0 WHERE idempotency_key = %s", _ledger(order_id)
    )
    sql("DELETE FROM payments_gateway_refund WHERE idempotency_key = %s", _ledger(order_id))


# Each case: damage done to the clean set, and exactly the kinds (and subjects) then reported.
DAMAGE: dict[str, tuple[Callable[[CleanSet], Any], set[str], Callable[[CleanSet], set[str]]]] = {
    "a capture kept on a failed order": (
        lambda s: sql(
            "UPDATE payments_gateway_charge SET status = 'CAPTURED' WHERE idempotency_key = %s",
            _ledger(s.declined),
        ),
        {"kept_capture", "projection_mismatch"},
        lambda s: {s.declined},
    ),
    "a refund missing on a cancelled order": (
        lambda s: _unrefund(s.cancelled),
        {"kept_capture", "refund_mismatch"},
        lambda s: {s.cancelled},
    ),
    "a completed order with no capture": (
        lambda s: sql("DELETE FROM payments_gateway_charge WHERE idempotency_key = %s", _ledger(s.completed)),
        {"completed_not_captured", "projection_mismatch"},
        lambda s: {s.completed},
    ),
    "a capture of another amount": (
        lambda s: sql(
            "UPDATE payments_gateway_charge SET amount = amount + 1 WHERE idempotency_key = %s",
            _ledger(s.completed),
        ),
        {"capture_amount_mismatch"},
        lambda s: {s.completed},
    ),
    "two captures in the payment projection": (
        lambda s: sql("UPDATE payments_payment SET captures = 2 WHERE order_id = %s", s.completed),
        {"duplicate_capture"},
        lambda s: {s.completed},
    ),
    "a ledger whose refund rows do not add up": (
        lambda s: sql("DELETE FROM payments_gateway_refund WHERE idempotency_key = %s", _ledger(s.cancelled)),
        {"ledger_mismatch"},
        lambda s: {s.cancelled},
    ),
    "a completed order whose reservation was released": (
        lambda s: sql("UPDATE inventory_reservation SET state = 'RELEASED' WHERE order_id = %s", s.completed),
        # ... and the product still counts the units as sold.
        {"reservation_state", "sold_mismatch"},
        lambda s: {s.completed, "AUD-1"},
    ),
    "an order status its saga did not decide": (
        lambda s: sql("UPDATE saga_instance SET order_status = 'FAILED' WHERE order_id = %s", s.completed),
        {"order_saga_mismatch"},
        lambda s: {s.completed},
    ),
    "stock that does not add up to what was received": (
        lambda s: sql(
            "UPDATE inventory_product SET available = available + 3, received = received + 3 "
            "WHERE product_id = 'AUD-1'"
        ),
        {"stock_not_conserved"},
        lambda s: {"AUD-1"},
    ),
    "a reserved count no reservation holds": (
        lambda s: sql(
            "UPDATE inventory_product SET available = available - 2, reserved = reserved + 2 "
            "WHERE product_id = 'AUD-2'"
        ),
        {"reserved_mismatch"},
        lambda s: {"AUD-2"},
    ),
    "a sold count no reservation confirmed": (
        lambda s: sql(
            "UPDATE inventory_product SET available = available - 1, sold = sold + 1 "
            "WHERE product_id = 'AUD-1'"
        ),
        {"sold_mismatch"},
        lambda s: {"AUD-1"},
    ),
}


@pytest.mark.parametrize("case", list(DAMAGE), ids=list(DAMAGE))
def test_damage_is_reported_and_fails_the_audit(clean_set: CleanSet, case: str) -> None:
    damage, expected_kinds, subject = DAMAGE[case]
    damage(clean_set)

    status, report = audit()

    assert status == 1
    assert report["ok"] is False
    assert kinds(report) == expected_kinds, report["discrepancies"]
    for item in report["discrepancies"]:
        assert {item["order_id"], item["product_id"]} & subject(clean_set), item
        assert item["expected"] and item["found"]
    assert (
        sum(report["by_kind"].values()) == len(report["discrepancies"]) == report["totals"]["discrepancies"]
    )


def test_each_discrepancy_is_one_line_then_the_summary(clean_set: CleanSet) -> None:
    sql(
        "UPDATE payments_gateway_charge SET amount = amount + 1 WHERE idempotency_key = %s",
        _ledger(clean_set.completed),
    )
    out = io.StringIO()

    with pytest.raises(SystemExit) as exited:
        call_command("audit_money", stdout=out)

    assert exited.value.code == 1
    assert out.getvalue().splitlines() == [
        f"capture_amount_mismatch  order {clean_set.completed}  "
        "expected: 50.00 captured  found: 51.00 captured",
        "audit_money FAILED: 1 discrepancies (capture_amount_mismatch 1) - 4 orders (4 settled, "
        "0 in progress), 2 products, 0 dead letters pending",
    ]


def test_an_order_in_progress_passes_until_its_deadline_is_past(clean_set: CleanSet, alice_client) -> None:
    running = place(alice_client, [("AUD-1", 1)])  # not settled: the saga waits for inventory

    status, report = audit()
    assert status == 0, report["discrepancies"]
    assert report["totals"]["in_progress"] == 1

    sql(
        "UPDATE saga_instance SET deadline = %s WHERE order_id = %s",
        timezone.now() - timedelta(minutes=5),
        running,
    )
    status, report = audit()

    assert status == 1
    assert [(item["kind"], item["order_id"]) for item in report["discrepancies"]] == [("stalled", running)]
    assert "past its deadline" in report["discrepancies"][0]["found"]
    assert audit("--grace", "600")[0] == 0, "within the grace period it is still in progress"


def test_a_parked_saga_is_reported_as_needing_attention(clean_set: CleanSet, alice_client) -> None:
    running = place(alice_client, [("AUD-1", 1)])
    sql(
        "UPDATE saga_instance SET needs_attention = TRUE, deadline = %s WHERE order_id = %s",
        timezone.now() - timedelta(minutes=5),
        running,
    )

    status, report = audit()

    assert status == 1
    assert [(item["kind"], item["order_id"]) for item in report["discrepancies"]] == [
        ("needs_attention", running)
    ]


def test_a_pending_dead_letter_fails_the_audit_until_it_is_replayed(clean_set: CleanSet) -> None:
    from eventstore.deadletters import record_dead_letter, replay_dead_letter

    dead = record_dead_letter(
        consumer="payments",
        raw_body=json.dumps({"type": "RefundPayment", "correlation_id": clean_set.cancelled}).encode(),
        headers={},
        exchange="oms.commands",
        routing_key="payments.RefundPayment",
        error="boom",
        attempts=4,
    )

    status, report = audit()

    assert status == 1
    assert report["totals"]["dead_letters_pending"] == 1
    [item] = report["discrepancies"]
    assert (item["kind"], item["dead_letter_id"], item["order_id"]) == (
        "dead_letter",
        dead.id,
        clean_set.cancelled,
    )
    assert item["expected"] == "replayed" and "RefundPayment for payments" in item["found"]

    replay_dead_letter(dead.id, by="admin")
    assert audit()[0] == 0


def test_since_limits_the_orders_audited(clean_set: CleanSet) -> None:
    sql(
        "UPDATE payments_gateway_charge SET status = 'CAPTURED' WHERE idempotency_key = %s",
        _ledger(clean_set.declined),
    )
    assert audit("--since", "1h")[0] == 1

    status, report = audit("--since", (timezone.now() + timedelta(seconds=1)).isoformat())

    assert status == 0
    assert report["totals"]["orders"] == 0 and report["totals"]["products"] == 2
    assert report["since"] is not None


def test_a_capture_for_no_order_is_an_orphan(clean_set: CleanSet) -> None:
    from payments.models import GatewayCharge

    GatewayCharge.objects.create(
        idempotency_key="order-00000000-0000-4000-8000-000000000000",
        token="tok_ok",
        amount="9.99",
        status="CAPTURED",
        charge_calls=1,
        created_at=timezone.now(),
        updated_at=timezone.now(),
    )

    status, report = audit()

    assert status == 1
    assert [(item["kind"], item["found"]) for item in report["discrepancies"]] == [
        ("orphan_capture", "9.99 kept")
    ]
    assert audit("--since", "1h")[0] == 0, "an audit of recent orders does not look for orphans"


def test_the_command_line_exit_status_and_json(clean_set: CleanSet) -> None:
    # A process of its own, on this test's database (the test's rows are committed).
    env = {**os.environ, "DATABASE_URL": _database_url(), "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    command = [sys.executable, "manage.py", "audit_money", "--json"]

    clean = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout)["ok"] is True

    sql("UPDATE payments_payment SET captures = 2 WHERE order_id = %s", clean_set.completed)
    damaged = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert damaged.returncode == 1, damaged.stderr
    assert json.loads(damaged.stdout)["by_kind"]["duplicate_capture"] == 1

    bad = subprocess.run(
        [*command, "--since", "yesterday"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "--since" in bad.stderr

    down = {**env, "DATABASE_URL": "postgres://postgres@127.0.0.1:1/nowhere"}
    failed = subprocess.run(command, cwd=ROOT, env=down, capture_output=True, text=True, timeout=120)
    assert failed.returncode == 2 and "the audit could not run" in failed.stderr


def _database_url() -> str:
    settings = connection.settings_dict
    return f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}"


def test_the_audit_reads_one_snapshot_while_orders_go_on(
    clean_set: CleanSet, alice_client, monkeypatch
) -> None:
    # An order placed and settled by another connection while the audit is between two reads:
    # read halfway (the product's sold count without its reservation) it would look like damage.
    import threading

    from config.audit import money

    read_payments = money.payments_public.payment_facts

    def meanwhile(**kwargs: Any) -> Any:
        def order() -> None:
            try:
                place(alice_client, [("AUD-1", 1)])
                settle()
            finally:
                connection.close()

        worker = threading.Thread(target=order)
        worker.start()
        worker.join()
        return read_payments(**kwargs)

    monkeypatch.setattr(money.payments_public, "payment_facts", meanwhile)
    report = money.run_audit()

    assert report.ok, [item.line() for item in report.discrepancies]
    assert report.orders == 4, "the order placed meanwhile is not in the snapshot"
    monkeypatch.undo()
    assert money.run_audit().orders == 5
