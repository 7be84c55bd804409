"""The audit of the whole platform (``manage.py audit_money``): composes the contexts' audit reads.

A Django app of its own (``config.audit``, label ``audit``) so that its management command and
its Celery task are found; it has no models.
"""
