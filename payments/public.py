"""What other contexts may import from `payments`: names and read-only helpers, nothing else."""

CONTEXT = "payments"
