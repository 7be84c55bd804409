"""What other contexts may import from `inventory`: names and read-only helpers, nothing else."""

from .audit import StockFact, reservation_states, stock_facts
from .products import ProductInfo, catalogue, upsert_product

CONTEXT = "inventory"

__all__ = [
    "CONTEXT",
    "ProductInfo",
    "StockFact",
    "catalogue",
    "reservation_states",
    "stock_facts",
    "upsert_product",
]
