"""What other contexts may import from `inventory`: names and read-only helpers, nothing else."""

CONTEXT = "inventory"
