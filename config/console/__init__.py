"""The ops console API (docs/console.md): one page per order, the sagas that need a look, the
operators' actions and a front-page summary, under ``/api/admin/`` for ADMIN tokens.

``compose`` gathers what each context says about an order through its ``public.py`` (config
may compose contexts; they never import each other); ``api`` holds one thin view per operation.
"""
