"""Audit reads of the orders context: every order's status and total, as its stream tells it.

One query for all orders (``manage.py audit_money`` reads thousands at once): the total from
each ``OrderCreated`` and the status from the stream's last event — the same rules as
:meth:`orders.domain.Order.apply`, without replaying every event in Python.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import OuterRef, Subquery
from django.db.models.fields.json import KT

from eventstore.models import StoredEvent

from . import domain
from .events import OrderCancelled, OrderCompleted, OrderCreated, OrderFailed, OrderStatusUpdated

AGGREGATE_TYPE = "order"

# The status each kind of last event leaves the order in (OrderStatusUpdated carries its own).
_STATUS_AFTER = {
    OrderCreated.event_type: domain.PENDING,
    OrderCompleted.event_type: domain.COMPLETED,
    OrderCancelled.event_type: domain.CANCELLED,
    OrderFailed.event_type: domain.FAILED,
}


@dataclass(frozen=True, slots=True)
class OrderFact:
    """One order as the audit sees it."""

    order_id: str
    status: str
    total: Decimal
    created_at: datetime

    @property
    def terminal(self) -> bool:
        """Whether the order reached COMPLETED, CANCELLED or FAILED."""
        return self.status in domain.TERMINAL


def order_facts(*, since: datetime | None = None) -> Iterator[OrderFact]:
    """Every order (placed at or after ``since``, if given): id, status, total, placing time."""
    last = StoredEvent.objects.filter(aggregate_id=OuterRef("aggregate_id")).order_by("-version")
    created = StoredEvent.objects.filter(aggregate_type=AGGREGATE_TYPE, event_type=OrderCreated.event_type)
    if since is not None:
        created = created.filter(timestamp__gte=since)
    rows = created.annotate(
        total=KT("event_data__total_amount"),
        last_type=Subquery(last.values("event_type")[:1]),
        last_status=Subquery(last.annotate(status=KT("event_data__status")).values("status")[:1]),
    ).values_list("aggregate_id", "total", "last_type", "last_status", "timestamp")
    for order_id, total, last_type, last_status, created_at in rows.iterator(chunk_size=5000):
        status = (
            last_status if last_type == OrderStatusUpdated.event_type else _STATUS_AFTER.get(last_type, "")
        )
        yield OrderFact(
            order_id=order_id,
            status=str(status or domain.PENDING),
            total=Decimal(str(total)),
            created_at=created_at,
        )
