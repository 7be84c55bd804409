"""What other contexts may import from `queries`: names and read-only helpers, nothing else."""

CONTEXT = "queries"
