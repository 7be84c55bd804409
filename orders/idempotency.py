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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from .models import IdempotencyRecord
from .recorder import KeyPair, recorder

RETENTION = timedelta(hours=24)
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


@dataclass(frozen=True, slots=True)
class KeyedRequest:
    """A request that came with an Idempotency-Key: its caller, its key, the hash of its body."""

    user_id: str
    key: str
    request_hash: str

    @property
    def pair(self) -> KeyPair:
        return (self.user_id, self.key)


class Keys:
    """The Idempotency-Keys of one batch of placements, inside the transaction that places them.

    Built first in that transaction: it takes every key's lock and reads every key's row in
    one statement each (orders/recorder.py). Then, placement by placement, :meth:`begin`
    says whether to go on, and :meth:`record` stores the answer with the key. A key that
    comes twice in one batch behaves as two requests one after the other: the second gets
    the first's answer (or 422 with another body), since both are answered after the commit.
    """

    def __init__(self, requests: Sequence[KeyedRequest]) -> None:
        if requests and not transaction.get_connection().in_atomic_block:
            raise RuntimeError("Keys belong inside the transaction that places the orders")
        self._recorder = recorder()
        pairs = list(dict.fromkeys(request.pair for request in requests))
        self._held = self._recorder.lock_keys(pairs)
        stored = self._recorder.stored_keys([pair for pair in pairs if pair in self._held])
        now = timezone.now()
        expired = {pair: row for pair, row in stored.items() if now - row.created_at > RETENTION}
        # Expired and not pruned yet; the lock makes them ours to drop.
        self._recorder.forget_keys([row.id for row in expired.values()])
        self._stored = {pair: row for pair, row in stored.items() if pair not in expired}
        self._answered: dict[KeyPair, tuple[str, Replay]] = {}

    def begin(self, request: KeyedRequest) -> Replay | None:
        """Go on (``None``) or the answer the key already has.

        Raises :class:`RequestStillRunning` when another transaction holds the key,
        :class:`KeyReusedWithOtherRequest` when the key's order came from another body.
        """
        answered = self._answered.get(request.pair)
        if answered is not None:
            request_hash, replay = answered
            if request_hash != request.request_hash:
                raise KeyReusedWithOtherRequest(request.key)
            return replay
        if request.pair not in self._held:
            raise RequestStillRunning(request.key)
        existing = self._stored.get(request.pair)
        if existing is None:
            return None
        if existing.state != IdempotencyRecord.DONE:
            # Only the previous scheme committed a row before its order; never take one over.
            raise RequestStillRunning(request.key)
        if existing.request_hash != request.request_hash:
            raise KeyReusedWithOtherRequest(request.key)
        return Replay(status=existing.response_status or 200, body=existing.response_body or {})

    def record(self, request: KeyedRequest, *, status: int, body: dict[str, Any]) -> None:
        """Store the answer with the key, written with the orders at commit (after :meth:`begin`).

        Should the row clash with one committed meanwhile, the whole transaction fails on the
        unique constraint: nothing of it is kept (the caller answers 409, see orders/intake.py).
        """
        now = timezone.now()
        self._recorder.record_keys(
            [(request.user_id, request.key, request.request_hash, IdempotencyRecord.DONE, status, body, now)]
        )
        self._answered[request.pair] = (request.request_hash, Replay(status=status, body=body))


def prune(*, now: Any = None) -> int:
    """Delete keys older than the retention period; returns how many."""
    cutoff = (now or timezone.now()) - RETENTION
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
