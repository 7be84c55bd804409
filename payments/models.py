"""Models of the payments context."""
