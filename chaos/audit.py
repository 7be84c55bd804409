"""Settling and auditing a scenario: what every order became, from the database and the ledger.

The columns of the report (each a count; the first six and the money mismatches are losses):

- **accepted**: orders the API answered 202;
- **lost**: accepted orders the system does not know (no ``OrderCreated`` in the event store);
- **stuck**: orders (every order in the database, accepted or not) not terminal after the
  settle wait: no terminal order event, or a saga not in COMPLETED / COMPENSATED / FAILED, or
  a saga parked with ``needs_attention``;
- **double captures**: orders with more than one gateway charge captured (ledger rows keyed
  ``order-<id>…``) or a payment record counting more than one capture, plus captured ledger
  charges that belong to no order;
- **kept captures**: FAILED or CANCELLED orders whose ledger charge is captured and not fully
  refunded;
- **stock violations**: products whose buckets do not add up to what was received, are
  negative, still hold reserved units at rest, or whose ``sold`` differs from the units of the
  COMPLETED orders; plus reservations still HELD at rest;
- **money mismatches**: COMPLETED orders without a kept capture of their amount, refunds above
  the captured amount;
- **dead letters**: rows of ``event_dead_letter``;
- **audit_money**: the exit code and discrepancies of ``manage.py audit_money --json`` (when
  that command exists).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter, defaultdict
from decimal import Decimal
from typing import Any

from .load import OrderResult
from .stack import PYTHON, ROOT, ChaosConfig, log

TERMINAL_SAGA = ("COMPLETED", "COMPENSATED", "FAILED")
TERMINAL_EVENTS = {"OrderCompleted": "COMPLETED", "OrderFailed": "FAILED", "OrderCancelled": "CANCELLED"}
LOSS_COLUMNS = (
    "lost",
    "stuck",
    "double_captures",
    "kept_captures",
    "stock_violations",
    "money_mismatches",
    "dead_letters",
)


def _open_orders(db: Any) -> tuple[int, int]:
    """(orders not settled, outbox rows not sent)."""
    open_count = db.execute(
        """
        SELECT count(*) FROM saga_instance s
        WHERE s.state NOT IN ('COMPLETED', 'COMPENSATED', 'FAILED') OR s.needs_attention
           OR NOT EXISTS (SELECT 1 FROM event_store e WHERE e.aggregate_id = s.order_id
                          AND e.event_type IN ('OrderCompleted', 'OrderFailed', 'OrderCancelled'))
        """
    ).fetchone()[0]
    pending = db.execute("SELECT count(*) FROM event_outbox WHERE sent_at IS NULL").fetchone()[0]
    return int(open_count), int(pending)


def _fingerprint(db: Any) -> tuple[Any, ...]:
    """Something that changes whenever the system does anything."""
    events = db.execute("SELECT count(*), coalesce(max(id), 0) FROM event_store").fetchone()
    ledger = db.execute(
        "SELECT count(*), coalesce(sum(charge_calls), 0), coalesce(sum(refunded_amount), 0) "
        "FROM payments_gateway_charge"
    ).fetchone()
    sagas = db.execute("SELECT count(*), coalesce(sum(version), 0) FROM saga_instance").fetchone()
    return (*events, *ledger, *sagas)


def settle(
    cfg: ChaosConfig, *, max_seconds: float, stall_seconds: float, quiet_seconds: float
) -> dict[str, Any]:
    """Wait until every order is terminal and the outbox empty (bounded), then for a quiet spell.

    The quiet spell (nothing written for ``quiet_seconds``) lets a late gateway answer, a resumed
    payment or the ledger reconciliation land before the audit, so a capture arriving after the
    order ended is seen (and its refund awaited). The time to settle is the moment of the last
    write once every order was terminal.
    """
    started = time.monotonic()
    last_change = started
    last_print = 0.0
    fingerprint: tuple[Any, ...] | None = None
    settled_after: float | None = None
    open_count = pending = -1
    while True:
        now = time.monotonic()
        try:
            with cfg.connect() as db:
                open_count, pending = _open_orders(db)
                current = _fingerprint(db)
        except Exception as exc:  # noqa: BLE001 - the database may be briefly unreachable
            log(f"settle: {exc}")
            time.sleep(1)
            continue
        if current != fingerprint:
            fingerprint, last_change = current, now
        if open_count == 0 and pending == 0:
            # Settled when the last order turned terminal or the last write happened (a refund
            # of a late capture may come after every order is terminal), whichever is later.
            settled_after = last_change - started
            if now - last_change >= quiet_seconds:
                break
        else:
            settled_after = None
        if now - last_print > 10:
            log(
                f"settle: {open_count} open orders, {pending} outbox rows pending after {now - started:.0f} s"
            )
            last_print = now
        if now - started > max_seconds or now - last_change > stall_seconds:
            log(f"settle: giving up after {now - started:.0f} s with {open_count} open orders")
            break
        time.sleep(0.5)
    return {
        "settled": settled_after is not None,
        "seconds_to_settle": None if settled_after is None else round(settled_after, 1),
        "waited_seconds": round(time.monotonic() - started, 1),
        "open_at_end": open_count,
        "outbox_pending_at_end": pending,
    }


def audit(cfg: ChaosConfig, results: list[OrderResult], received: dict[str, int]) -> dict[str, Any]:
    """Every column of the report for one scenario, with the offending ids in ``details``."""
    accepted = {r.order_id: r for r in results if r.order_id is not None}
    with cfg.connect() as db:
        created = {
            row[0]
            for row in db.execute("SELECT aggregate_id FROM event_store WHERE event_type = 'OrderCreated'")
        }
        final: dict[str, str] = {}
        for order_id, event_type in db.execute(
            "SELECT aggregate_id, event_type FROM event_store "
            "WHERE event_type IN ('OrderCompleted', 'OrderFailed', 'OrderCancelled') ORDER BY id"
        ):
            final[order_id] = TERMINAL_EVENTS[event_type]
        sagas = {
            row[0]: row
            for row in db.execute(
                "SELECT order_id, state, needs_attention, failure_reason, items, amount, payment_token "
                "FROM saga_instance"
            )
        }
        charges = db.execute(
            "SELECT idempotency_key, token, amount, status, refunded_amount, charge_calls "
            "FROM payments_gateway_charge"
        ).fetchall()
        refunds = dict(
            db.execute(
                "SELECT idempotency_key, sum(amount) FROM payments_gateway_refund GROUP BY idempotency_key"
            ).fetchall()
        )
        records = {
            row[0]: row
            for row in db.execute("SELECT order_id, status, captures, amount FROM payments_payment")
        }
        products = db.execute(
            "SELECT product_id, available, reserved, sold, received FROM inventory_product"
        ).fetchall()
        held = [
            str(row[0])
            for row in db.execute("SELECT order_id FROM inventory_reservation WHERE state = 'HELD'")
        ]
        dead = db.execute(
            "SELECT consumer, message_type, error FROM event_dead_letter ORDER BY id"
        ).fetchall()

    details: dict[str, Any] = {}
    lost = sorted(set(accepted) - created)
    details["lost"] = lost

    stuck = sorted(
        order_id
        for order_id in created
        if order_id not in final
        or order_id not in sagas
        or sagas[order_id][1] not in TERMINAL_SAGA
        or sagas[order_id][2]
    )
    details["stuck"] = [
        {
            "order_id": o,
            "order": final.get(o),
            "saga": sagas[o][1] if o in sagas else None,
            "needs_attention": bool(sagas[o][2]) if o in sagas else None,
            "token": sagas[o][6] if o in sagas else None,
        }
        for o in stuck
    ]

    # Ledger rows by order: the key is order-<order_id> (anything after it would be a second charge).
    by_order: defaultdict[str, list[tuple[Any, ...]]] = defaultdict(list)
    stray = []
    for row in charges:
        key = row[0]
        order_id = key[len("order-") : len("order-") + 36] if key.startswith("order-") else None
        if order_id in created:
            by_order[order_id].append(row)
        else:
            stray.append(row)
    double = sorted(
        {o for o, rows in by_order.items() if sum(r[3] == "CAPTURED" for r in rows) > 1}
        | {o for o, rec in records.items() if (rec[2] or 0) > 1}
    )
    stray_captured = [r[0] for r in stray if r[3] == "CAPTURED"]
    details["double_captures"] = double + stray_captured

    kept = []
    money = []
    for order_id in sorted(created):
        status = final.get(order_id)
        rows = by_order.get(order_id, [])
        captured = [r for r in rows if r[3] == "CAPTURED"]
        kept_amount = sum((Decimal(r[2]) - Decimal(r[4]) for r in captured), Decimal("0"))
        for r in rows:
            if Decimal(r[4]) > Decimal(r[2]) or Decimal(refunds.get(r[0]) or 0) != Decimal(r[4]):
                money.append(
                    {"order_id": order_id, "problem": "refunds do not match the charge", "charge": _row(r)}
                )
        if status in ("FAILED", "CANCELLED") and kept_amount > 0:
            kept.append(
                {
                    "order_id": order_id,
                    "status": status,
                    "failure_reason": sagas[order_id][3] if order_id in sagas else None,
                    "token": sagas[order_id][6] if order_id in sagas else None,
                    "kept": str(kept_amount),
                    "charges": [_row(r) for r in rows],
                }
            )
        if status == "COMPLETED":
            amount = Decimal(sagas[order_id][5]) if order_id in sagas else None
            if amount is None or kept_amount != amount:
                money.append(
                    {
                        "order_id": order_id,
                        "problem": "completed without a kept capture of its amount",
                        "amount": str(amount),
                        "charges": [_row(r) for r in rows],
                    }
                )
    details["kept_captures"] = kept
    details["money_mismatches"] = money

    sold: Counter[str] = Counter()
    for order_id, status in final.items():
        if status == "COMPLETED" and order_id in sagas:
            for item in sagas[order_id][4]:
                sold[item["product_id"]] += int(item["quantity"])
    stock = []
    for product_id, available, reserved, sold_units, got in products:
        problems = []
        if min(available, reserved, sold_units) < 0:
            problems.append("negative bucket")
        if available + reserved + sold_units != got:
            problems.append("buckets do not add up to received")
        if got != received.get(product_id, got):
            problems.append(f"received changed from {received.get(product_id)}")
        if reserved != 0:
            problems.append(f"{reserved} units still reserved at rest")
        if sold_units != sold[product_id]:
            problems.append(f"sold {sold_units} but completed orders hold {sold[product_id]}")
        if problems:
            stock.append({"product_id": product_id, "problems": problems})
    for order_id in held:
        stock.append(
            {"reservation": order_id, "problems": ["still HELD at rest"], "order": final.get(order_id)}
        )
    details["stock_violations"] = stock
    details["dead_letters"] = [{"consumer": c, "type": t, "error": e[:300]} for c, t, e in dead]

    outcomes = Counter(final.get(o, "OPEN") for o in created)
    reasons = Counter(sagas[o][3] or "-" for o in created if o in sagas and final.get(o) == "FAILED")
    cancels = [r for r in results if r.spec.cancel_after is not None and r.order_id is not None]
    cancel_accepted_not_cancelled = [
        r.order_id for r in cancels if r.cancel_status == 202 and final.get(str(r.order_id)) != "CANCELLED"
    ]
    details["cancel_202_not_cancelled"] = cancel_accepted_not_cancelled
    row = {
        "accepted": len(accepted),
        "not_accepted": sum(1 for r in results if r.order_id is None),
        "not_accepted_last_answers": dict(Counter(str(r.status) for r in results if r.order_id is None)),
        "created": len(created),
        "lost": len(lost),
        "stuck": len(stuck),
        "double_captures": len(details["double_captures"]),
        "kept_captures": len(kept),
        "stock_violations": len(stock),
        "money_mismatches": len(money),
        "dead_letters": len(dead),
        "outcomes": dict(outcomes),
        "failure_reasons": dict(reasons),
        "cancels_sent": len(cancels),
        "cancels_202": sum(1 for r in cancels if r.cancel_status == 202),
        "cancel_202_not_cancelled": len(cancel_accepted_not_cancelled),
        "post_retries": sum(r.attempts - 1 for r in results),
        "gateway_charges": len(charges),
    }
    return {"row": row, "details": details}


def _row(r: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "key": r[0],
        "token": r[1],
        "amount": str(r[2]),
        "status": r[3],
        "refunded": str(r[4]),
        "calls": r[5],
    }


def audit_money_available() -> bool:
    """Whether ``manage.py audit_money`` exists in this tree (it is being written elsewhere)."""
    patterns = ("*/management/commands/audit_money.py", "*/*/management/commands/audit_money.py")
    return any(path for pattern in patterns for path in ROOT.glob(pattern))


def audit_money(cfg: ChaosConfig) -> dict[str, Any]:
    """Run ``manage.py audit_money --json`` on the scenario's database."""
    if not audit_money_available():
        return {"available": False}
    result = subprocess.run(
        [PYTHON, "manage.py", "audit_money", "--json"],
        cwd=ROOT,
        env=cfg.stack_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    parsed: Any = None
    try:
        parsed = json.loads(result.stdout)
    except ValueError:
        parsed = None
    return {
        "available": True,
        "exit_code": result.returncode,
        "report": parsed,
        "stdout": None if parsed is not None else result.stdout[-4000:],
        "stderr": result.stderr[-4000:],
    }
