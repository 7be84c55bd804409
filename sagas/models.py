"""Models of the sagas context."""
