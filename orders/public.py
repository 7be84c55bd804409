"""What other contexts may import from `orders`: names and read-only helpers, nothing else."""

CONTEXT = "orders"
