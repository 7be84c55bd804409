"""Reads of the order read model: filtered lists and full-text search, paginated.

Every read is limited to the active generation of the ``orders`` projection. The lists are
the ORM's alone; how a search matches and ranks (the full-text column on PostgreSQL, words
elsewhere) is the read recorder's (:mod:`queries.recorder`), chosen once for the database.
"""

from __future__ import annotations

import contextlib
import math
import uuid
from typing import Any

from django.db.models import Q, QuerySet

from eventstore.messages import utc_iso

from .filters import OrderFilters
from .models import OrderItemReadModel, OrderReadModel
from .projections import active_generation
from .recorder import read_recorder

_ORDERINGS = {
    "created_at": ("created_at", "order_id"),
    "-created_at": ("-created_at", "-order_id"),
    "total_amount": ("total_amount", "-created_at", "order_id"),
    "-total_amount": ("-total_amount", "-created_at", "order_id"),
}


def order_summary(row: OrderReadModel) -> dict[str, Any]:
    """The list item of the contract."""
    return {
        "order_id": str(row.order_id),
        "customer_id": row.customer_id,
        "status": row.status,
        "total_amount": f"{row.total_amount:.2f}",
        "created_at": utc_iso(row.created_at),
        "updated_at": utc_iso(row.updated_at),
    }


def _filtered(filters: OrderFilters) -> QuerySet[OrderReadModel]:
    generation = active_generation("orders")
    rows = OrderReadModel.objects.filter(generation=generation)
    if filters.customer_id is not None:
        rows = rows.filter(customer_id=filters.customer_id)
    if filters.status:
        rows = rows.filter(status=filters.status)
    if filters.product_id:
        lines = OrderItemReadModel.objects.filter(product_id=filters.product_id, order__generation=generation)
        rows = rows.filter(id__in=lines.values("order_id"))
    if filters.created_from:
        rows = rows.filter(created_at__gte=filters.created_from)
    if filters.created_to:
        rows = rows.filter(created_at__lt=filters.created_to)
    if filters.min_total is not None:
        rows = rows.filter(total_amount__gte=filters.min_total)
    if filters.max_total is not None:
        rows = rows.filter(total_amount__lte=filters.max_total)
    return rows


def _page(
    rows: QuerySet[OrderReadModel], filters: OrderFilters, *, ordering: tuple[Any, ...]
) -> dict[str, Any]:
    count = rows.count()
    start = (filters.page - 1) * filters.page_size
    results = [order_summary(row) for row in rows.order_by(*ordering)[start : start + filters.page_size]]
    pages = max(1, math.ceil(count / filters.page_size))
    return {
        "count": count,
        "next_page": filters.page + 1 if filters.page < pages else None,
        "previous_page": min(filters.page - 1, pages) if filters.page > 1 else None,
        "results": results,
    }


def list_orders(filters: OrderFilters) -> dict[str, Any]:
    """One page of orders matching ``filters`` (``next_page``/``previous_page`` are numbers)."""
    return _page(_filtered(filters), filters, ordering=_ORDERINGS[filters.ordering])


def search_orders(q: str, filters: OrderFilters) -> dict[str, Any]:
    """One page of orders whose product names, id or customer id match ``q``, best first.

    PostgreSQL: the GIN-indexed tsvector (``websearch_to_tsquery``, ranked by ``ts_rank``), or
    the exact order id or customer id; elsewhere every word must appear (icontains).
    """
    rows = _filtered(filters)
    exact = Q(customer_id=q)
    with contextlib.suppress(ValueError):
        exact |= Q(order_id=uuid.UUID(q))
    matching, ordering = read_recorder().search(rows, q, exact)
    return _page(matching, filters, ordering=ordering)
