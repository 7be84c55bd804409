"""What other contexts may import from `inventory`: names and read-only helpers, nothing else."""

from typing import Any

from .audit import StockFact, reservation_states, stock_facts
from .events import (
    InventoryConfirmed,
    InventoryReleased,
    InventoryReservationFailed,
    InventoryReserved,
    StockAdjusted,
)
from .products import ProductInfo, catalogue, upsert_product

CONTEXT = "inventory"

__all__ = [
    "CONTEXT",
    "InventoryConfirmed",
    "InventoryReleased",
    "InventoryReservationFailed",
    "InventoryReserved",
    "ProductInfo",
    "StockAdjusted",
    "StockFact",
    "catalogue",
    "reservation_of",
    "reservation_states",
    "reservation_stream",
    "stock_facts",
    "upsert_product",
]


def reservation_stream(order_id: str) -> str:
    """The event stream of the stock held for ``order_id`` (for the ops console)."""
    from .recorder import stream_of

    return stream_of(order_id)


def reservation_of(order_id: str) -> dict[str, Any] | None:
    """``{"state", "items", "expires_at"}`` of the order's reservation, or None (for the ops console)."""
    import uuid

    from .models import Reservation

    try:
        key = uuid.UUID(order_id)
    except ValueError:
        return None
    row = Reservation.objects.filter(order_id=key).first()
    if row is None:
        return None
    return {"state": row.state, "items": row.items, "expires_at": row.expires_at}
