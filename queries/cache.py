"""Cache-first reads of lists and searches, invalidated by generation counters.

A cached answer's key includes the current value of a counter: the customer's own counter
for answers limited to one customer, the global one otherwise. Applying an event bumps the
global counter and the touched customers' counters once the projection commits, so no
answer older than an applied event is served again (one customer's orders do not evict the
others' lists). A counter missing from the cache restarts at the current time in
nanoseconds, never at a value an older entry was stored under. When the cache is down
(django-redis with IGNORE_EXCEPTIONS) reads go to the database; a Redis restart empties the
cache, and entries expire after ``TTL_SECONDS`` whatever happens.

With a read replica (``config.replica``) an answer is computed there, and the replica may not
have replayed the projection's commit yet. So a bump first records the primary's WAL position
(after the commit, so at or past it) under ``queries:wal``, and an answer is stored only when
the replica had replayed that position before computing it; a staler answer is served once
and not kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.core.cache import cache as default_cache
from django.db import DatabaseError
from redis.exceptions import RedisError

from config import replica

logger = logging.getLogger(__name__)

TTL_SECONDS = 60
_PREFIX = "queries"
_WAL_KEY = f"{_PREFIX}:wal"


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


# Each counter incremented, or started at ARGV[1] (now, in nanoseconds) when missing: the same
# as ``incr`` then ``add`` per counter, in one round trip for all of them.
_BUMP_SCRIPT = """
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    redis.call('INCR', key)
  else
    redis.call('SET', key, ARGV[1], 'NX')
  end
end
return #KEYS
"""


def bump(*, customer_ids: Iterable[str]) -> None:
    """Make every cached answer about these customers, and every global answer, stale."""
    if replica.configured():
        _advance_written_position()
    keys = [_counter_key(customer_id) for customer_id in dict.fromkeys([None, *customer_ids])]
    if _bump_in_one_call(keys):
        return
    for key in keys:
        try:
            default_cache.incr(key)
        except ValueError:  # no counter yet: nothing was cached under one
            default_cache.add(key, time.time_ns(), timeout=None)


def _bump_in_one_call(keys: list[str]) -> bool:
    """Bump every counter with one script call on django-redis; ``False`` on another backend."""
    client = getattr(default_cache, "client", None)
    if client is None or not hasattr(client, "get_client") or not hasattr(client, "make_key"):
        return False
    try:
        client.get_client(write=True).eval(
            _BUMP_SCRIPT, len(keys), *[client.make_key(key) for key in keys], time.time_ns()
        )
    except RedisError:
        # As django-redis does with IGNORE_EXCEPTIONS: a cache outage never fails the caller.
        if not getattr(default_cache, "_ignore_exceptions", False):
            raise
        logger.warning("cache counters not bumped: the cache is unavailable", exc_info=True)
    return True


# The primary's WAL position (ARGV[1]) recorded if it is past the one stored: bumps of several
# processes may arrive out of order, the position never goes back.
_ADVANCE_SCRIPT = """
local stored = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > stored then
  redis.call('SET', KEYS[1], ARGV[1])
end
return 1
"""


def _advance_written_position() -> None:
    """Record the primary's WAL position before the counters move (readers read them in turn)."""
    try:
        position = replica.primary_position()
    except DatabaseError:
        logger.warning("primary WAL position not read: replica answers may be cached stale", exc_info=True)
        return
    client = getattr(default_cache, "client", None)
    if client is not None and hasattr(client, "get_client") and hasattr(client, "make_key"):
        try:
            client.get_client(write=True).eval(_ADVANCE_SCRIPT, 1, client.make_key(_WAL_KEY), position)
        except RedisError:
            if not getattr(default_cache, "_ignore_exceptions", False):
                raise
            logger.warning("replica position not recorded: the cache is unavailable", exc_info=True)
        return
    if position > int(default_cache.get(_WAL_KEY) or 0):  # a local cache: one process
        default_cache.set(_WAL_KEY, position, timeout=None)


def _written_position() -> int | None:
    """The last primary WAL position recorded by a bump (``None`` when none is known)."""
    value = default_cache.get(_WAL_KEY)
    return None if value is None else int(value)


def cached(*, namespace: str, customer_id: str | None, params: Any, compute: Callable[[], Any]) -> Any:
    """``compute()``'s answer, from the cache when an entry of the current generation exists.

    The answer is computed through ``config.replica.read`` (the replica when there is one);
    it is stored only when it is at least as recent as the counter it is stored under.
    """
    counter = generation(customer_id)
    if counter is None:
        return replica.read(compute).value
    key = f"{_PREFIX}:{namespace}:{counter}:{_digest([customer_id, params])}"
    hit = default_cache.get(key)
    if hit is not None:
        return hit
    # Read after the counter: a bump records the position before it moves the counter.
    answer = replica.read(compute, fresh_from=_written_position() if replica.configured() else None)
    if answer.fresh:
        default_cache.set(key, answer.value, timeout=TTL_SECONDS)
    return answer.value
