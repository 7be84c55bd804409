"""The platform's name for "another writer got there first": the base of such errors.

``config.problems`` answers it with 409 ``concurrent_update`` without knowing who raised it; the
event store's ``ConcurrencyError`` derives from it. So the error handler depends on nothing
below the platform, and the event store depends only on this tiny module (no cycle).
"""

from __future__ import annotations


class ConcurrentUpdate(Exception):
    """What the request read was changed by a concurrent writer: reload and decide again."""
