"""``make chaos``: the stack mode under faults, then an audit of what every order became.

Each scenario starts the real stack (the processes of ``deploy/run_stack.py``, started one by
one so that one kind can be killed) on a fresh database, vhost and Redis db, drives a bounded
mixed load through the HTTP API while it injects its fault, waits for every order to settle
and audits the database, the gateway ledger and ``manage.py audit_money``. See
``chaos/run.py`` for the scenarios and the settings the chaos stack runs with.
"""
