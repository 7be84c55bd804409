"""Product handlers and reads: stock set by an operator, recorded as StockAdjusted events."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import transaction

from eventstore.store import append

from .domain import PRODUCT_ID_PATTERN, Stock, money, stock_adjusted
from .models import Product
from .recorder import recorder
from .stock_cache import invalidate_on_commit, read_through

AGGREGATE_TYPE = "product"
CONTEXT = "inventory"


@dataclass(frozen=True, slots=True)
class ProductInfo:
    """What other contexts may know of a product."""

    product_id: str
    name: str
    price: Decimal
    available: int
    reserved: int


def stream_of(product_id: str) -> str:
    """The product stream id."""
    return f"product-{product_id}"


def upsert_product(*, product_id: str, name: str, price: Decimal, available: int) -> bool:
    """Create or update a product with an absolute ``available``; True when it was created.

    The difference in ``available`` (and any name or price change) is recorded as one
    StockAdjusted event; the same values again record nothing.
    """
    if not PRODUCT_ID_PATTERN.fullmatch(product_id):
        raise ValueError(f"invalid product id {product_id!r}")
    price = Decimal(price).quantize(Decimal("0.01"))
    with transaction.atomic():
        _, created = Product.objects.get_or_create(
            product_id=product_id, defaults={"name": name, "price": price}
        )
        row = Product.objects.select_for_update().get(product_id=product_id)
        stock = Stock(product_id, row.available, row.reserved, row.sold)
        delta = stock.adjust_available(available)
        if not created and delta == 0 and (row.name, row.price) == (name, price):
            return False
        event = stock_adjusted(
            product_id=product_id, name=name, price=price, delta=delta, available=available
        )
        append(
            context=CONTEXT,
            aggregate_type=AGGREGATE_TYPE,
            aggregate_id=stream_of(product_id),
            expected_version=row.version,
            events=[event],
        )
        row.name, row.price, row.available = name, price, stock.available
        row.received, row.version = stock.received, row.version + 1
        row.save()
        invalidate_on_commit([product_id])
        return created


def product_view(product_id: str) -> dict[str, Any] | None:
    """The stock view of GET /api/inventory/{id}, cache-aside; None for an unknown product."""
    return read_through(product_id, fresh_product_view)


def fresh_product_view(product_id: str) -> dict[str, Any] | None:
    """The stock view read from the database (what a writer answers with)."""
    row = Product.objects.filter(product_id=product_id).first()
    return None if row is None else view_of(row)


def view_of(row: Product) -> dict[str, Any]:
    """A product row as the API shows it."""
    return {
        "product_id": row.product_id,
        "name": row.name,
        "price": money(row.price),
        "available": row.available,
        "reserved": row.reserved,
    }


def catalogue(product_ids: Iterable[str]) -> dict[str, ProductInfo]:
    """Current name, price and stock of the known products among ``product_ids`` (read from the database)."""
    # Ids that cannot exist never reach the database (a NUL would make PostgreSQL raise).
    wanted = {pid for pid in product_ids if isinstance(pid, str) and PRODUCT_ID_PATTERN.fullmatch(pid)}
    if not wanted:
        return {}
    return {
        product_id: ProductInfo(product_id, name, _decimal(price), available, reserved)
        for product_id, name, price, available, reserved in recorder().catalogue(sorted(wanted))
    }


def _decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value)).quantize(Decimal("0.01"))
