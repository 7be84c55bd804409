"""What other contexts may import from `inventory`: names and read-only helpers, nothing else."""

from .products import ProductInfo, catalogue, upsert_product

CONTEXT = "inventory"

__all__ = ["CONTEXT", "ProductInfo", "catalogue", "upsert_product"]
