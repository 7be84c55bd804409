"""Audit reads of the inventory context: each product's stock beside what its history says.

``received`` is recomputed from the product's ``StockAdjusted`` events (the sum of their
deltas: the only way stock enters or leaves the catalogue), ``reserved`` from the HELD
reservations and ``sold`` from the CONFIRMED ones (confirming sells, releasing a confirmed
reservation restocks and leaves it RELEASED).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.db.models import IntegerField, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast

from eventstore.models import StoredEvent

from .domain import ReservationState
from .events import StockAdjusted
from .models import Product, Reservation
from .products import AGGREGATE_TYPE, stream_of


@dataclass(frozen=True, slots=True)
class StockFact:
    """One product: its stored buckets and the same quantities recomputed from their sources."""

    product_id: str
    available: int
    reserved: int
    sold: int
    received: int
    received_by_events: int
    held_by_reservations: int
    sold_by_reservations: int


def stock_facts() -> list[StockFact]:
    """Every product's stock, stored and recomputed (one query per source, not per product)."""
    deltas = dict(
        StoredEvent.objects.filter(aggregate_type=AGGREGATE_TYPE, event_type=StockAdjusted.event_type)
        .annotate(delta=Cast(KT("event_data__delta"), IntegerField()))
        .values("aggregate_id")
        .annotate(total=Sum("delta"))
        .values_list("aggregate_id", "total")
    )
    held: dict[str, int] = defaultdict(int)
    sold: dict[str, int] = defaultdict(int)
    live = (ReservationState.HELD.value, ReservationState.CONFIRMED.value)
    for items, state in (
        Reservation.objects.filter(state__in=live)
        .order_by()
        .values_list("items", "state")
        .iterator(chunk_size=5000)
    ):
        target = held if state == ReservationState.HELD.value else sold
        for item in items:
            target[str(item["product_id"])] += int(item["quantity"])
    rows = Product.objects.order_by("product_id").values_list(
        "product_id", "available", "reserved", "sold", "received"
    )
    return [
        StockFact(
            product_id=product_id,
            available=available,
            reserved=reserved,
            sold=sold_count,
            received=received,
            received_by_events=int(deltas.get(stream_of(product_id)) or 0),
            held_by_reservations=held[product_id],
            sold_by_reservations=sold[product_id],
        )
        for product_id, available, reserved, sold_count, received in rows
    ]


def reservation_states(*, since: datetime | None = None) -> dict[str, str]:
    """``{order id: reservation state}`` of every reservation (made at or after ``since``)."""
    rows = Reservation.objects.order_by()
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    return {
        str(order_id): state
        for order_id, state in rows.values_list("order_id", "state").iterator(chunk_size=5000)
    }
