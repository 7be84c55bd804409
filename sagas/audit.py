"""Audit reads of the sagas context: where each order's saga stands and when the sweep acts next."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from . import domain
from .models import SagaInstance


@dataclass(frozen=True, slots=True)
class SagaFact:
    """One order's saga: state, step, the order status it last decided, deadline, parked or not."""

    order_id: str
    state: str
    step: str | None
    order_status: str
    deadline: datetime
    needs_attention: bool

    @property
    def terminal(self) -> bool:
        """Whether the saga ended (COMPLETED, COMPENSATED or FAILED)."""
        return self.state in domain.TERMINAL


def saga_facts(*, since: datetime | None = None) -> dict[str, SagaFact]:
    """``{order id: saga}`` of every saga (started at or after ``since``)."""
    rows = SagaInstance.objects.order_by()
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    return {
        order_id: SagaFact(order_id, state, step, order_status, deadline, needs_attention)
        for order_id, state, step, order_status, deadline, needs_attention in rows.values_list(
            "order_id", "state", "step", "order_status", "deadline", "needs_attention"
        ).iterator(chunk_size=5000)
    }
