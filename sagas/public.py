"""What other contexts may import from `sagas`: names and read-only helpers, nothing else."""

CONTEXT = "sagas"
