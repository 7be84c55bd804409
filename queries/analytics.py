"""Order analytics over a range of UTC days: counts, revenue, top products, per day, payments.

On PostgreSQL the figures come from two materialized views refreshed CONCURRENTLY by a beat
task (``refresh_views``) every ``ANALYTICS_REFRESH_SECONDS`` (60), so analytics never blocks
the projection; ``as_of`` is the start of the last refresh. A refresh recomputes every stored
order (about 5.6 µs each here), so it runs once a minute rather than every few seconds: on a
busy store a 5 s period spent a growing share of a core on figures nobody had asked for.
In the embedded mode (SQLite) the same figures are computed directly from the read models
and ``as_of`` is now. The API reads them from the read replica when there is one
(``config.replica``); a refresh always runs on the primary. Refreshing and reading the
views is SQL of the read recorder (:mod:`queries.recorder`, chosen once for the database);
this module sums their rows into the contract's document, or computes the rows from the read
models where there are no views.

Revenue, the average order value and top products count COMPLETED orders; the status counts
and the per-day order counts count every order created in the range; the payment success rate
is captured payments over payments with an outcome (captured or failed) of those orders.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import F, Max, OuterRef, Subquery, Sum

from eventstore.messages import utc_iso

from .filters import STATUSES
from .models import OrderItemReadModel, OrderReadModel, PaymentReadModel
from .projections import active_generation
from .recorder import DailyRow, ProductRow, read_recorder

TOP_PRODUCTS = 10
ZERO = Decimal("0")


def refresh_views() -> datetime | None:
    """Refresh the views concurrently (PostgreSQL) and record when; ``None`` elsewhere."""
    return read_recorder().refresh_views()


def _bounds(start: date, end: date) -> tuple[datetime, datetime]:
    return datetime.combine(start, time.min, tzinfo=UTC), datetime.combine(
        end + timedelta(days=1), time.min, tzinfo=UTC
    )


def _rows_direct(start: date, end: date) -> tuple[list[DailyRow], list[ProductRow]]:
    low, high = _bounds(start, end)
    generation = active_generation("orders")
    outcome = PaymentReadModel.objects.filter(
        generation=active_generation("payments"), order_id=OuterRef("order_id")
    ).values("outcome")[:1]
    orders = OrderReadModel.objects.filter(generation=generation, created_at__gte=low, created_at__lt=high)
    counts: dict[tuple[date, str], list[Any]] = defaultdict(lambda: [0, ZERO, 0, 0])
    for created, status, amount, paid in orders.annotate(paid=Subquery(outcome)).values_list(
        "created_at", "status", "total_amount", "paid"
    ):
        bucket = counts[(created.astimezone(UTC).date(), status)]
        bucket[0] += 1
        bucket[1] += amount
        bucket[2] += paid == PaymentReadModel.CAPTURED
        bucket[3] += paid == PaymentReadModel.FAILED
    products = (
        OrderItemReadModel.objects.filter(order__in=orders.filter(status="COMPLETED"))
        .values("product_id")
        .annotate(name=Max("product_name"), units=Sum("quantity"), amount=Sum(F("price") * F("quantity")))
        .values_list("product_id", "name", "units", "amount")
    )
    daily = [(day, status, *values) for (day, status), values in counts.items()]
    return daily, [tuple(row) for row in products]


def _money(amount: Decimal) -> str:
    return f"{Decimal(amount):.2f}"


def order_analytics(start: date, end: date) -> dict[str, Any]:
    """The analytics document of the contract for ``start``..``end`` (inclusive)."""
    reads = read_recorder()
    as_of = reads.analytics_as_of()
    from_views = reads.analytics_rows(start, end)
    daily, products = from_views if from_views is not None else _rows_direct(start, end)
    by_status = dict.fromkeys(STATUSES, 0)
    per_day: dict[date, list[Any]] = {
        start + timedelta(days=n): [0, ZERO] for n in range((end - start).days + 1)
    }
    revenue, completed, captured, failed = ZERO, 0, 0, 0
    for day, status, orders, amount, paid, unpaid in daily:
        by_status[status] = by_status.get(status, 0) + int(orders)
        per_day[day][0] += int(orders)
        captured, failed = captured + int(paid), failed + int(unpaid)
        if status == "COMPLETED":
            revenue += Decimal(amount)
            completed += int(orders)
            per_day[day][1] += Decimal(amount)
    top = sorted(products, key=lambda row: (-int(row[2]), -Decimal(row[3]), row[0]))[:TOP_PRODUCTS]
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "as_of": utc_iso(as_of),
        "orders_by_status": by_status,
        "revenue": _money(revenue),
        "average_order_value": _money(revenue / completed if completed else ZERO),
        "top_products": [
            {"product_id": pid, "product_name": name, "quantity": int(qty), "revenue": _money(amount)}
            for pid, name, qty, amount in top
        ],
        "per_day": [
            {"date": day.isoformat(), "orders": orders, "revenue": _money(amount)}
            for day, (orders, amount) in sorted(per_day.items())
        ],
        "payment_success_rate": round(captured / (captured + failed), 4) if captured + failed else None,
    }
