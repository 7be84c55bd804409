"""Cache-aside for stock reads: GET /api/inventory/{id} from the cache, deleted on every commit.

The entry is deleted after the transaction that changed the product commits, so the next read
fills it from the database. A short TTL bounds the one classic cache-aside race (a read that
fills the cache with a value older than a concurrent commit's delete).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.core.cache import cache
from django.db import transaction

TTL_SECONDS = 30


def product_key(product_id: str) -> str:
    """The cache key of one product's stock view."""
    return f"inventory:product:{product_id}"


def read_through(product_id: str, load: Callable[[str], dict[str, Any] | None]) -> dict[str, Any] | None:
    """The cached view of ``product_id``, loaded and cached on a miss (a missing product is not cached)."""
    key = product_key(product_id)
    view = cache.get(key)
    if view is None:
        view = load(product_id)
        if view is not None:
            cache.set(key, view, TTL_SECONDS)
    return view


def invalidate_on_commit(product_ids: Iterable[str]) -> None:
    """Delete the cached views of ``product_ids`` once the current transaction commits."""
    keys = [product_key(product_id) for product_id in product_ids]
    if keys:
        transaction.on_commit(lambda: cache.delete_many(keys))
