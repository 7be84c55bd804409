"""Cache-first reads of lists and searches, invalidated by generation counters.

A cached answer's key includes the current value of a counter: the customer's own counter
for answers limited to one customer, the global one otherwise. Applying an event bumps the
global counter and the touched customers' counters once the projection commits, so no
answer older than an applied event is served again (one customer's orders do not evict the
others' lists). A counter missing from the cache restarts at the current time in
nanoseconds, never at a value an older entry was stored under. When the cache is down
(django-redis with IGNORE_EXCEPTIONS) reads go to the database; a Redis restart empties the
cache, and entries expire after ``TTL_SECONDS`` whatever happens.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.core.cache import cache as default_cache

TTL_SECONDS = 60
_PREFIX = "queries"


def _counter_key(customer_id: str | None) -> str:
    if customer_id is None:
        return f"{_PREFIX}:gen"
    return f"{_PREFIX}:gen:c:{_digest(customer_id)}"


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:32]


def generation(customer_id: str | None) -> int | None:
    """The counter for answers about one customer (or all); ``None`` when the cache is down."""
    key = _counter_key(customer_id)
    value = default_cache.get(key)
    if value is None:
        default_cache.add(key, time.time_ns(), timeout=None)
        value = default_cache.get(key)
    return value


def bump(*, customer_ids: Iterable[str]) -> None:
    """Make every cached answer about these customers, and every global answer, stale."""
    for customer_id in [None, *customer_ids]:
        key = _counter_key(customer_id)
        try:
            default_cache.incr(key)
        except ValueError:  # no counter yet: nothing was cached under one
            default_cache.add(key, time.time_ns(), timeout=None)


def cached(*, namespace: str, customer_id: str | None, params: Any, compute: Callable[[], Any]) -> Any:
    """``compute()``'s answer, from the cache when an entry of the current generation exists."""
    counter = generation(customer_id)
    if counter is None:
        return compute()
    key = f"{_PREFIX}:{namespace}:{counter}:{_digest([customer_id, params])}"
    hit = default_cache.get(key)
    if hit is not None:
        return hit
    value = compute()
    default_cache.set(key, value, timeout=TTL_SECONDS)
    return value
