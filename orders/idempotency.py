"""``Idempotency-Key`` for POST /api/orders: one key of one user stands for one order, 24 hours.

The key's row is written in the transaction that places the order and commits with it, so a
key has a row exactly when its order exists: the unique constraint on (user, key) then makes
a second order for one key impossible — a duplicate that got as far as writing the row fails
on the constraint, and its whole transaction, order included, rolls back.

While the first request runs, its transaction holds an advisory lock on the key (PostgreSQL,
transaction level); a duplicate tries that lock without waiting and, not getting it, is told
the first is still running (409 with Retry-After). The lock ends with the transaction: a
request that crashed (its transaction rolled back, nothing committed) leaves neither a row nor
a lock behind, and its retry places the order. There is no timeout after which a key still
in use could be taken over, however long the first request takes.

On SQLite (the embedded mode) every transaction takes the database's write lock at BEGIN
(``IMMEDIATE``): a duplicate waits for the first to finish, then gets its replay.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, connection
from django.utils import timezone

from .models import IdempotencyRecord

RETENTION = timedelta(hours=24)
MAX_KEY_LENGTH = 255
# The class of the two-key advisory locks (a space of its own, apart from one-key locks).
_LOCK_CLASS = zlib.crc32(b"orders.idempotency") - 2**31


class KeyReusedWithOtherRequest(Exception):
    """The same key came with a different body (HTTP 422)."""


class RequestStillRunning(Exception):
    """The first request with this key has not finished yet (HTTP 409 with Retry-After)."""


@dataclass(frozen=True, slots=True)
class Replay:
    """The stored answer of the first request with this key."""

    status: int
    body: dict[str, Any]


def fingerprint(body: Any) -> str:
    """The hash of a parsed JSON body: key order and whitespace do not matter."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def begin(*, user_id: str, key: str, request_hash: str) -> Replay | None:
    """Take the key for this request (``None``: go on) or return the first request's answer.

    Call it first in the transaction that places the order; the key stays taken until that
    transaction ends. Raises :class:`RequestStillRunning` when another transaction holds the
    key, :class:`KeyReusedWithOtherRequest` when the key's order came from another body.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("begin() belongs inside the transaction that places the order")
    _lock(user_id, key)
    existing = IdempotencyRecord.objects.filter(user_id=user_id, key=key).first()
    if existing is None:
        return None
    if timezone.now() - existing.created_at > RETENTION:
        existing.delete()  # expired and not pruned yet; the lock makes this ours to drop
        return None
    if existing.state != IdempotencyRecord.DONE:
        # Only the previous scheme committed a row before its order; never take one over.
        raise RequestStillRunning(key)
    if existing.request_hash != request_hash:
        raise KeyReusedWithOtherRequest(key)
    return Replay(status=existing.response_status or 200, body=existing.response_body or {})


def record(*, user_id: str, key: str, request_hash: str, status: int, body: dict[str, Any]) -> None:
    """Store the answer with the key, in the transaction that placed the order (after begin()).

    Raises :class:`RequestStillRunning` if the key got a row meanwhile: the caller's
    transaction must then roll back (it does, as the exception leaves its ``atomic``).
    """
    try:
        IdempotencyRecord.objects.create(
            user_id=user_id,
            key=key,
            request_hash=request_hash,
            state=IdempotencyRecord.DONE,
            response_status=status,
            response_body=body,
        )
    except IntegrityError:
        raise RequestStillRunning(key) from None


def prune(*, now: Any = None) -> int:
    """Delete keys older than the retention period; returns how many."""
    cutoff = (now or timezone.now()) - RETENTION
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def _lock(user_id: str, key: str) -> None:
    """Hold the key's advisory lock until the transaction ends, or raise RequestStillRunning."""
    if connection.vendor != "postgresql":
        return  # SQLite: the transaction already holds the only write lock
    digest = hashlib.sha256(f"{user_id}\x00{key}".encode()).digest()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_try_advisory_xact_lock(%s, %s)",
            [_LOCK_CLASS, int.from_bytes(digest[:4], "big", signed=True)],
        )
        (taken,) = cursor.fetchone()
    if not taken:
        raise RequestStillRunning(key)
