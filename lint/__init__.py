"""The project's own lint rules, run by the linters of ``make lint`` (import-linter's contract types)."""
