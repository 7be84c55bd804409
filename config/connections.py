"""Database connections the server has closed are dropped before a request can use them.

A web worker keeps its PostgreSQL connection between requests (``CONN_MAX_AGE``). When the
server ends it (a restart, ``pg_terminate_backend``, an idle timeout) the next request would
fail on its first statement. Django's ``CONN_HEALTH_CHECKS`` prevents that with a ``SELECT 1``
round trip at the start of every request that touches the database; this middleware gets the
same answer without a round trip: an idle connection's socket has nothing to read unless the
server has written to it, and a server that ends a session writes its FATAL message and
closes the socket. Such a connection is closed here and Django opens a new one on first use.
A connection dropped by the network without a word is not seen (nor promptly by the
``SELECT 1``, which waits on TCP); the request then fails once and the connection is replaced.

The threads a context runs of its own (charge runners, a batch's writers) mind their
connections here too, between two pieces of work and when they end: the contexts run their
statements through their recorders only, and hold no connection object themselves.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable

from django.db import connections
from django.http import HttpRequest, HttpResponse


def drop_closed_connections() -> int:
    """Close every idle PostgreSQL connection whose socket the server has written to or closed.

    Returns how many were closed. Costs one non-blocking ``select`` per open connection.
    """
    dropped = 0
    for wrapper in connections.all(initialized_only=True):
        raw = wrapper.connection
        if raw is None or wrapper.vendor != "postgresql" or wrapper.in_atomic_block:
            continue
        try:
            readable = raw.closed or bool(select.select([raw.fileno()], [], [], 0)[0])
        except (OSError, ValueError):  # the socket is gone already
            readable = True
        if readable:
            wrapper.close()
            dropped += 1
    return dropped


def recycle_thread_connections() -> None:
    """Between two pieces of a thread's work: close its connections that failed or are too old.

    Like Django's ``close_old_connections`` but without its cost on sound connections: that
    one makes the next query pay a health check (a SELECT 1) every time.
    """
    for wrapper in connections.all(initialized_only=True):
        if wrapper.connection is None:
            continue
        obsolete = wrapper.close_at is not None and time.monotonic() >= wrapper.close_at
        autocommit_changed = wrapper.get_autocommit() != wrapper.settings_dict["AUTOCOMMIT"]
        if obsolete or wrapper.errors_occurred or autocommit_changed:
            wrapper.close_if_unusable_or_obsolete()


def close_thread_connections() -> None:
    """Close every connection this thread opened (a thread that ends, or that works rarely)."""
    connections.close_all()


class ClosedConnectionMiddleware:
    """Before each request: drop the connections the database server has closed meanwhile."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        drop_closed_connections()
        return self.get_response(request)
