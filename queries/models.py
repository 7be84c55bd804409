"""Models of the queries context."""
