"""The money and stock audit: every order's money, every product's stock, progress, dead letters.

Each context reads its own tables (``<context>.public``: ``order_facts``, ``saga_facts``,
``payment_facts``/``ledger_facts``, ``stock_facts``/``reservation_states``; the event store's
``pending_dead_letters``); this module only compares what they say. On PostgreSQL every read
runs in one REPEATABLE READ, READ ONLY transaction, so the audit sees one consistent moment of a
running system (the gateway ledger lives in the same database and is in that snapshot too).

An order is **settled** when it is terminal (COMPLETED, CANCELLED, FAILED) and so is its saga;
money and reservations are judged on settled orders only, and only once their refunds have been
answered. An order that is not settled is **in progress** while its saga is within its deadline
(plus ``grace`` seconds for the once-a-second sweep), **stalled** past it, or **parked** when the
saga waits for a person (``needs_attention``).

What each kind means (``expected`` / ``found`` in each discrepancy say the numbers):

- ``completed_not_captured``: a COMPLETED order with no capture in the gateway ledger.
- ``capture_amount_mismatch``: a COMPLETED order whose ledger capture is not the order total.
- ``kept_capture``: a FAILED or CANCELLED order of which the gateway keeps money (net ≠ 0).
- ``duplicate_capture``: the payment projection counts more than one capture.
- ``projection_mismatch``: the payment projection and the ledger disagree on whether it captured.
- ``refund_mismatch``: the refunds the payment recorded differ from those the ledger made.
  (A COMPLETED order may keep less than its total only by refunds its payment recorded: an
  operator's refund through ``POST /api/payments/refund``.)
- ``ledger_mismatch``: a ledger charge's refunded amount is not the sum of its refund rows.
- ``orphan_capture``: the ledger keeps money for an order that does not exist (full audits only).
- ``reservation_state``: a COMPLETED order whose reservation is not CONFIRMED, or a FAILED or
  CANCELLED one whose reservation still holds stock.
- ``stock_not_conserved``: available + reserved + sold (or ``received``) differs from the stock
  received by the product's ``StockAdjusted`` events.
- ``reserved_mismatch``: ``reserved`` is not the sum of the HELD reservations of the product.
- ``sold_mismatch``: ``sold`` is not the sum of the CONFIRMED reservations of the product.
- ``order_saga_mismatch``: the order's status is not the one its saga decided.
- ``stalled``: an order not settled, its saga past its deadline (or no saga at all).
- ``needs_attention``: an order whose saga is parked until a person acts.
- ``dead_letter``: a message that failed every retry and was not replayed.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from eventstore.audit import pending_dead_letters
from inventory import public as inventory_public
from orders import public as orders_public
from payments import public as payments_public
from sagas import public as sagas_public

KINDS = (
    "completed_not_captured",
    "capture_amount_mismatch",
    "kept_capture",
    "duplicate_capture",
    "projection_mismatch",
    "refund_mismatch",
    "ledger_mismatch",
    "orphan_capture",
    "reservation_state",
    "stock_not_conserved",
    "reserved_mismatch",
    "sold_mismatch",
    "order_saga_mismatch",
    "stalled",
    "needs_attention",
    "dead_letter",
)

# Seconds past a saga's deadline before it counts as stalled: the sweep runs every second.
DEFAULT_GRACE_SECONDS = 10.0

ZERO = Decimal("0.00")
COMPLETED = "COMPLETED"
HOLDING = frozenset({"HELD", "CONFIRMED"})


@dataclass(frozen=True, slots=True)
class Discrepancy:
    """One thing that is not right: its kind, what it is about, what was expected and found."""

    kind: str
    expected: str
    found: str
    order_id: str | None = None
    product_id: str | None = None
    dead_letter_id: int | None = None

    @property
    def subject(self) -> str:
        """``order <id>``, ``product <id>`` or ``dead_letter <id>``."""
        if self.product_id is not None:
            return f"product {self.product_id}"
        if self.dead_letter_id is not None:
            return f"dead_letter {self.dead_letter_id}"
        return f"order {self.order_id}"

    def line(self) -> str:
        """The discrepancy as one line of text."""
        return f"{self.kind}  {self.subject}  expected: {self.expected}  found: {self.found}"


@dataclass(slots=True)
class AuditReport:
    """What one audit found, and how much it looked at."""

    audited_at: datetime
    since: datetime | None
    grace_seconds: float
    orders: int = 0
    settled: int = 0
    in_progress: int = 0
    products: int = 0
    dead_letters_pending: int = 0
    discrepancies: list[Discrepancy] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.discrepancies

    def by_kind(self) -> dict[str, int]:
        """Discrepancies per kind, every kind present (0 when none)."""
        counted = Counter(item.kind for item in self.discrepancies)
        return {kind: counted.get(kind, 0) for kind in KINDS}

    def summary(self) -> str:
        """The one-line verdict."""
        counted = {kind: count for kind, count in self.by_kind().items() if count}
        verdict = (
            "OK: no discrepancy"
            if self.ok
            else f"FAILED: {len(self.discrepancies)} discrepancies ("
            + ", ".join(f"{kind} {count}" for kind, count in counted.items())
            + ")"
        )
        scope = f" since {self.since.isoformat()}" if self.since else ""
        return (
            f"audit_money {verdict} - {self.orders} orders{scope} ({self.settled} settled, "
            f"{self.in_progress} in progress), {self.products} products, "
            f"{self.dead_letters_pending} dead letters pending"
        )

    def as_json(self) -> dict[str, Any]:
        """The report for machines (``manage.py audit_money --json``)."""
        return {
            "ok": self.ok,
            "audited_at": self.audited_at.isoformat(),
            "since": self.since.isoformat() if self.since else None,
            "grace_seconds": self.grace_seconds,
            "totals": {
                "orders": self.orders,
                "settled": self.settled,
                "in_progress": self.in_progress,
                "products": self.products,
                "dead_letters_pending": self.dead_letters_pending,
                "discrepancies": len(self.discrepancies),
            },
            "by_kind": self.by_kind(),
            "discrepancies": [asdict(item) for item in self.discrepancies],
        }


def run_audit(
    *,
    since: datetime | None = None,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
    dead_letters_since: bool = True,
) -> AuditReport:
    """Audit every order placed at or after ``since`` (all when None), every product, the dead letters.

    Stock is always audited whole (a product's buckets hold every order's units); ``since`` limits
    the orders and (unless ``dead_letters_since`` is False) the dead letters, and turns the
    orphan-capture check off.
    """
    with _snapshot():
        now = timezone.now()
        orders = list(orders_public.order_facts(since=since))
        sagas = sagas_public.saga_facts(since=since)
        payments = payments_public.payment_facts(since=since)
        ledger = payments_public.ledger_facts(since=since)
        reservations = inventory_public.reservation_states(since=since)
        stock = inventory_public.stock_facts()
        dead_letters = pending_dead_letters(since=since if dead_letters_since else None)
    report = AuditReport(audited_at=now, since=since, grace_seconds=grace_seconds)
    found = report.discrepancies
    grace = timedelta(seconds=grace_seconds)
    for order in orders:
        saga = sagas.get(order.order_id)
        if not (order.terminal and (saga is None or saga.terminal)):
            problems = _progress(order, saga, now=now, grace=grace)
            report.in_progress += not problems
            found += problems
            continue
        if saga is not None and saga.order_status != order.status:
            found.append(_saga_mismatch(order, saga))
        found += _reservation(order, reservations.get(order.order_id))
        payment = payments.get(order.order_id)
        if payment is not None and payment.pending_refunds:
            report.in_progress += 1  # refunds not answered yet: the money is judged once they are
            continue
        report.settled += 1
        found += _money(order, payment, ledger.get(order.order_id))
    report.orders = len(orders)
    known = {order.order_id for order in orders}
    for entry in ledger.values():
        if entry.refund_rows_total != entry.refunded and (since is None or entry.order_id in known):
            found.append(
                Discrepancy(
                    "ledger_mismatch",
                    expected=f"refund rows total {entry.refunded} (the charge's refunded amount)",
                    found=f"{entry.refund_rows_total} in {entry.refund_rows} refund rows",
                    order_id=entry.order_id,
                )
            )
        if since is None and entry.order_id not in known and entry.net != ZERO:
            found.append(
                Discrepancy(
                    "orphan_capture",
                    expected="0.00 (no such order)",
                    found=f"{entry.net} kept",
                    order_id=entry.order_id,
                )
            )
    report.products = len(stock)
    for product in stock:
        found += _stock(product)
    report.dead_letters_pending = len(dead_letters)
    for dead in dead_letters:
        found.append(
            Discrepancy(
                "dead_letter",
                expected="replayed",
                found=f"{dead.message_type} for {dead.consumer} pending since {dead.created_at.isoformat()}",
                order_id=dead.correlation_id or None,
                dead_letter_id=dead.id,
            )
        )
    found.sort(key=lambda item: (KINDS.index(item.kind), item.subject))
    return report


@contextlib.contextmanager
def _snapshot() -> Iterator[None]:
    """One consistent snapshot for every read (inside a caller's transaction: that one)."""
    if connection.in_atomic_block:
        yield
    elif connection.vendor == "postgresql":
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield
    elif connection.vendor == "sqlite":
        # Django's transactions take SQLite's write lock (IMMEDIATE); a deferred one that only
        # reads holds a snapshot (WAL) without holding up any writer.
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("BEGIN DEFERRED")
            try:
                yield
            finally:
                cursor.execute("ROLLBACK")
    else:
        yield


def _progress(
    order: orders_public.OrderFact, saga: sagas_public.SagaFact | None, *, now: datetime, grace: timedelta
) -> list[Discrepancy]:
    """An order not settled: in progress, stalled, parked, or disagreeing with its saga."""
    if saga is None:
        if order.terminal:
            return []
        return [
            Discrepancy(
                "stalled", expected="a saga driving the order", found="no saga", order_id=order.order_id
            )
        ]
    where = f"order {order.status}, saga {saga.state}" + (f" at {saga.step}" if saga.step else "")
    # A completed order being cancelled stays COMPLETED until its saga has compensated.
    if saga.terminal or (order.terminal and not (order.status == COMPLETED and saga.state == "COMPENSATING")):
        return [_saga_mismatch(order, saga)]
    if saga.needs_attention:
        return [
            Discrepancy(
                "needs_attention",
                expected="settled, or a person acting on the parked saga",
                found=f"{where}, parked",
                order_id=order.order_id,
            )
        ]
    overdue = (now - saga.deadline).total_seconds()
    if now > saga.deadline + grace:
        return [
            Discrepancy(
                "stalled",
                expected=f"settled or moved on by {saga.deadline.isoformat()}",
                found=f"{where}, {overdue:.0f} s past its deadline",
                order_id=order.order_id,
            )
        ]
    return []


def _saga_mismatch(order: orders_public.OrderFact, saga: sagas_public.SagaFact) -> Discrepancy:
    return Discrepancy(
        "order_saga_mismatch",
        expected=f"{saga.order_status} (saga {saga.state})",
        found=order.status,
        order_id=order.order_id,
    )


def _money(
    order: orders_public.OrderFact,
    payment: payments_public.PaymentFact | None,
    entry: payments_public.LedgerFact | None,
) -> list[Discrepancy]:
    """A settled order's money: the ledger against the order, the projection against the ledger."""
    found = []
    ledger_captured = entry is not None and entry.captured
    net = entry.net if entry is not None else ZERO
    ledger_state = "no ledger entry" if entry is None else f"ledger {entry.status}"

    def add(kind: str, expected: str, seen: str) -> None:
        found.append(Discrepancy(kind, expected=expected, found=seen, order_id=order.order_id))

    if order.status == COMPLETED:
        if entry is None or not ledger_captured:
            add("completed_not_captured", f"{order.total} captured", f"nothing captured ({ledger_state})")
        elif entry.amount != order.total:
            add("capture_amount_mismatch", f"{order.total} captured", f"{entry.amount} captured")
    elif net != ZERO:
        assert entry is not None
        add(
            "kept_capture",
            f"0.00 kept ({order.status})",
            f"{net} kept (captured {entry.amount}, refunded {entry.refunded})",
        )
    captures = payment.captures if payment is not None else 0
    if captures > 1:
        add("duplicate_capture", "at most 1 capture", f"{captures} captures")
    if (captures > 0) != ledger_captured:
        payment_state = "no payment" if payment is None else f"payment {payment.status or 'not requested'}"
        add(
            "projection_mismatch",
            f"{1 if ledger_captured else 0} capture ({ledger_state})",
            f"{captures} captures ({payment_state})",
        )
    elif ledger_captured and payment is not None and entry is not None and payment.refunded != entry.refunded:
        add(
            "refund_mismatch", f"{entry.refunded} refunded (ledger)", f"{payment.refunded} refunded (payment)"
        )
    return found


def _reservation(order: orders_public.OrderFact, state: str | None) -> list[Discrepancy]:
    """A settled order's stock: sold when COMPLETED, given back otherwise."""
    if order.status == COMPLETED:
        if state == "CONFIRMED":
            return []
        expected = "reservation CONFIRMED"
    else:
        if state not in HOLDING:
            return []
        expected = f"reservation released or expired ({order.status})"
    return [
        Discrepancy(
            "reservation_state",
            expected=expected,
            found=f"reservation {state or 'none'}",
            order_id=order.order_id,
        )
    ]


def _stock(product: inventory_public.StockFact) -> list[Discrepancy]:
    """One product: buckets against received stock, reserved and sold against reservations."""
    found = []
    buckets = product.available + product.reserved + product.sold
    if buckets != product.received_by_events or product.received != product.received_by_events:
        found.append(
            Discrepancy(
                "stock_not_conserved",
                expected=f"{product.received_by_events} received (StockAdjusted events)",
                found=(
                    f"available {product.available} + reserved {product.reserved} + sold {product.sold} "
                    f"= {buckets}, received {product.received}"
                ),
                product_id=product.product_id,
            )
        )
    # Each bucket held for orders against the reservations that hold it.
    for bucket, counted, by_reservations, state in (
        ("reserved", product.reserved, product.held_by_reservations, "HELD"),
        ("sold", product.sold, product.sold_by_reservations, "CONFIRMED"),
    ):
        if counted != by_reservations:
            found.append(
                Discrepancy(
                    f"{bucket}_mismatch",
                    expected=f"{by_reservations} {bucket} ({state} reservations)",
                    found=f"{counted} {bucket}",
                    product_id=product.product_id,
                )
            )
    return found
