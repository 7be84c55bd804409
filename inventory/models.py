"""Models of the inventory context."""
