"""``Idempotency-Key`` for POST /api/orders: one key of one user stands for one request, 24 hours.

The key row is inserted and committed *before* the order is placed: a concurrent duplicate
then hits the unique constraint and sees the first request as running (409) or done (replay),
so two requests with one key never create two orders.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from .models import IdempotencyRecord

RETENTION = timedelta(hours=24)
# A request still "running" after this long died with its process; its key may be taken over.
ABANDONED_AFTER = timedelta(seconds=60)
MAX_KEY_LENGTH = 255


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


def claim(*, user_id: str, key: str, request_hash: str) -> Replay | None:
    """Take the key for this request (``None``) or return the first request's answer.

    Raises :class:`KeyReusedWithOtherRequest` or :class:`RequestStillRunning`. Commits on its
    own, outside any caller transaction.
    """
    for _ in range(3):
        try:
            with transaction.atomic():
                IdempotencyRecord.objects.create(user_id=user_id, key=key, request_hash=request_hash)
            return None
        except IntegrityError:
            existing = IdempotencyRecord.objects.filter(user_id=user_id, key=key).first()
            if existing is None or _expired(existing):
                _forget(existing)
                continue
            if existing.request_hash != request_hash:
                raise KeyReusedWithOtherRequest(key) from None
            if existing.state == IdempotencyRecord.DONE:
                return Replay(status=existing.response_status or 200, body=existing.response_body or {})
            raise RequestStillRunning(key) from None
    raise RequestStillRunning(key)


def complete(*, user_id: str, key: str, status: int, body: dict[str, Any]) -> None:
    """Store the answer with the key (call it in the transaction that did the work)."""
    IdempotencyRecord.objects.filter(user_id=user_id, key=key).update(
        state=IdempotencyRecord.DONE, response_status=status, response_body=body
    )


def release(*, user_id: str, key: str) -> None:
    """Give the key back after a request that changed nothing (e.g. rejected input)."""
    IdempotencyRecord.objects.filter(user_id=user_id, key=key, state=IdempotencyRecord.IN_PROGRESS).delete()


def prune(*, now: Any = None) -> int:
    """Delete keys older than the retention period; returns how many."""
    cutoff = (now or timezone.now()) - RETENTION
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def _expired(record: IdempotencyRecord) -> bool:
    age = timezone.now() - record.created_at
    if age > RETENTION:
        return True
    return record.state == IdempotencyRecord.IN_PROGRESS and age > ABANDONED_AFTER


def _forget(record: IdempotencyRecord | None) -> None:
    if record is not None:
        IdempotencyRecord.objects.filter(id=record.id, created_at=record.created_at).delete()
