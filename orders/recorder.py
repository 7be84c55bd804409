"""The orders context's own SQL: the Idempotency-Key rows and their locks, for a whole batch.

An order itself is written through the event store (its events and outbox rows); what the
context stores apart from that is the key of a keyed request (orders/idempotency.py). A batch
of placements (orders/intake.py) takes the locks of all its keys with one statement, reads
their rows with one more, and buffers the new rows in the unit of work, which writes them
with one multi-row INSERT at commit.

Two implementations, chosen once when first used from the configured database engine:
PostgreSQL takes transaction-level advisory locks; the portable one (SQLite, the embedded
mode) needs none, since every transaction there holds the database's only write lock.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Q

from eventstore.sql import bound_cursor
from eventstore.unit_of_work import current

from .models import IdempotencyRecord

# The class of the two-key advisory locks (a space of its own, apart from one-key locks).
_LOCK_CLASS = zlib.crc32(b"orders.idempotency") - 2**31
_KEY_COLUMNS = (
    "user_id",
    "key",
    "request_hash",
    "state",
    "response_status",
    "response_body",
    "created_at",
)

KeyPair = tuple[str, str]  # (user id, key)


@dataclass(frozen=True, slots=True)
class StoredKey:
    """An Idempotency-Key row as read."""

    id: int
    state: str
    request_hash: str
    response_status: int | None
    response_body: dict[str, Any] | None
    created_at: datetime


class PortableRecorder:
    """Plain SQL any backend runs; no locks (SQLite serialises every writing transaction)."""

    def lock_keys(self, pairs: Sequence[KeyPair]) -> set[KeyPair]:
        """The pairs whose key this transaction now holds (here: all of them)."""
        return set(pairs)

    def stored_keys(self, pairs: Sequence[KeyPair]) -> dict[KeyPair, StoredKey]:
        """The rows of ``pairs`` that exist, in one statement."""
        if not pairs:
            return {}
        wanted = Q()
        for user_id, key in pairs:
            wanted |= Q(user_id=user_id, key=key)
        return {
            (row.user_id, row.key): StoredKey(
                id=row.id,
                state=row.state,
                request_hash=row.request_hash,
                response_status=row.response_status,
                response_body=row.response_body,
                created_at=row.created_at,
            )
            for row in IdempotencyRecord.objects.filter(wanted)
        }

    def forget_keys(self, ids: Sequence[int]) -> None:
        """Delete expired rows (this transaction holds their keys)."""
        if ids:
            IdempotencyRecord.objects.filter(id__in=ids).delete()

    def record_keys(self, rows: Sequence[Sequence[Any]]) -> None:
        """Buffer new DONE rows (values in ``KEY_COLUMNS`` order) in the open unit of work."""
        unit = current()
        if unit is None:
            raise RuntimeError("keys are recorded inside the unit of work that places their orders")
        unit.insert(IdempotencyRecord, _KEY_COLUMNS, rows)


class PostgresRecorder(PortableRecorder):
    """PostgreSQL: a key is held through a transaction-level advisory lock, tried without waiting."""

    def lock_keys(self, pairs: Sequence[KeyPair]) -> set[KeyPair]:
        if not pairs:
            return set()
        hashes = [_lock_id(pair) for pair in pairs]
        # One statement for the batch; a lock this transaction already holds is taken again at
        # once (re-entrant), so a key twice in one batch is held by it.
        with bound_cursor() as cursor:
            cursor.execute(
                "SELECT pg_try_advisory_xact_lock(%s, k) FROM unnest(%s::int[]) WITH ORDINALITY AS t(k, n) "
                "ORDER BY n",
                [_LOCK_CLASS, hashes],
            )
            taken = [row[0] for row in cursor.fetchall()]
        return {pair for pair, ok in zip(pairs, taken, strict=True) if ok}


KEY_COLUMNS = _KEY_COLUMNS


def _lock_id(pair: KeyPair) -> int:
    user_id, key = pair
    digest = hashlib.sha256(f"{user_id}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:4], "big", signed=True)


_chosen: PortableRecorder | None = None


def recorder() -> PortableRecorder:
    """The implementation for the configured database, chosen at the first call."""
    global _chosen
    if _chosen is None:
        engine = str(settings.DATABASES["default"]["ENGINE"])
        _chosen = PostgresRecorder() if "postgresql" in engine else PortableRecorder()
    return _chosen
