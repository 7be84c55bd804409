"""The composition root's start-up wiring: connects contexts that must not import each other."""
