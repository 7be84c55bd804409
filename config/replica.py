"""The read replica (docs/operations.md "Read replica"): a router that sends the query side's reads to it.

With ``DATABASE_REPLICA_URL`` set, the settings add the database alias ``replica``, a hot
standby streaming from the primary. Nothing reads from it unless asked: the query side runs
its list, search and analytics reads through :func:`read`, which routes every ORM read made
inside it to the replica (:class:`ReplicaRouter`); writes, and every read made anywhere else
(the command side's ``GET /api/orders/{id}``, the projections, the admin), stay on the
primary, so the command side keeps reading its own writes.

The replica is used only while it can answer well. Before a read, one statement asks it how
far it has replayed (:func:`replica_status`). The primary answers instead when the replica
cannot be reached or fails the statement (any database error: a broken connection, a query
cancelled by a recovery conflict), when it does not stream from the primary, or when its
replay is more than ``DATABASE_REPLICA_MAX_LAG`` seconds behind; after a failure the replica
is left alone for ``REPLICA_RETRY_SECONDS``. Each such read is counted in
``oms_db_replica_fallbacks_total{reason}``.

A read also says whether its answer is *fresh from* a primary WAL position: whether the
replica had replayed that position before the read began. The query side's cache stores only
such answers (:mod:`queries.cache`), so a lagging replica never leaves an answer in the cache
that is older than the events the cache was told about.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from . import metrics

logger = logging.getLogger(__name__)

REPLICA = "replica"
REPLICA_RETRY_SECONDS = 5.0

T = TypeVar("T")

# The alias the ORM reads from inside :func:`read` (None: the primary, as everywhere else).
_reading: contextvars.ContextVar[str | None] = contextvars.ContextVar("oms_replica_reading", default=None)


class ReplicaRouter:
    """Reads inside :func:`read` go to the replica; everything else is Django's default."""

    def db_for_read(self, model: type[Any], **hints: Any) -> str | None:
        return _reading.get()

    def db_for_write(self, model: type[Any], **hints: Any) -> str | None:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        return None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        # The replica is a copy of the primary: migrations reach it through the WAL.
        return False if db == REPLICA else None


def configured() -> bool:
    """Whether this process has a replica (``DATABASE_REPLICA_URL`` set, stack mode)."""
    return REPLICA in connections.settings


def read_alias() -> str:
    """The alias the current read goes to: the replica inside :func:`read`, else the primary."""
    return _reading.get() or DEFAULT_DB_ALIAS


@contextmanager
def _routed_to(alias: str | None) -> Iterator[None]:
    token = _reading.set(alias)
    try:
        yield
    finally:
        _reading.reset(token)


# --- Replica status -----------------------------------------------------------------------------

# One statement on the replica: how far it has replayed, how long its replay is behind what it
# has received (0 when it has replayed all of it), and whether it streams from the primary.
# A server that is not in recovery (a replica URL naming the primary itself) is never behind.
_STATUS_SQL = """
SELECT pg_is_in_recovery(),
       COALESCE(pg_last_wal_replay_lsn() - '0/0', 0)::bigint,
       CASE WHEN NOT pg_is_in_recovery()
              OR pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
            ELSE extract(epoch FROM clock_timestamp()
                 - COALESCE(pg_last_xact_replay_timestamp(), pg_postmaster_start_time()))
       END::float8,
       NOT pg_is_in_recovery() OR EXISTS (SELECT 1 FROM pg_stat_wal_receiver)
"""


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    """What the replica says of itself."""

    in_recovery: bool
    replayed: int  # WAL position replayed, in bytes from 0/0
    lag_seconds: float  # how long its replay is behind the WAL it has received
    streaming: bool  # a WAL receiver is running (or the server is a primary)

    def is_fresh_from(self, position: int | None) -> bool:
        """Whether it has replayed the primary's WAL up to ``position`` (``None``: nothing known, no)."""
        return not self.in_recovery or (position is not None and self.replayed >= position)


def replica_status() -> ReplicaStatus:
    """Ask the replica (raises ``DatabaseError`` when it cannot answer)."""
    with connections[REPLICA].cursor() as cursor:
        cursor.execute(_STATUS_SQL)
        in_recovery, replayed, lag, streaming = cursor.fetchone()
    return ReplicaStatus(bool(in_recovery), int(replayed), max(0.0, float(lag)), bool(streaming))


def primary_position() -> int:
    """The primary's current WAL insert position, in bytes from 0/0.

    The insert position, not the write one: a commit made with ``synchronous_commit = off`` may
    not be written yet, but it is always behind the insert position.
    """
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SELECT (pg_current_wal_insert_lsn() - '0/0')::bigint")
        return int(cursor.fetchone()[0])


# --- Reads --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer(Generic[T]):
    """A read's value, where it came from and whether it is fresh from the asked position."""

    value: T
    source: str  # "replica" or "primary"
    fresh: bool


class _Pause:
    """The moment until which this process leaves a failed replica alone."""

    def __init__(self) -> None:
        self._until = 0.0
        self._lock = threading.Lock()

    def active(self) -> bool:
        return time.monotonic() < self._until

    def start(self) -> None:
        with self._lock:
            self._until = time.monotonic() + REPLICA_RETRY_SECONDS

    def clear(self) -> None:
        with self._lock:
            self._until = 0.0


_pause = _Pause()


def read(compute: Callable[[], T], *, fresh_from: int | None = None) -> Answer[T]:
    """``compute()`` with its ORM reads on the replica when it can answer, else on the primary.

    ``fresh_from`` is a primary WAL position (see :mod:`queries.cache`); the answer is fresh when
    the replica had replayed it before ``compute()`` began (a primary's answer always is).
    """
    if not configured():
        return Answer(compute(), "primary", True)
    if connections[DEFAULT_DB_ALIAS].in_atomic_block:
        # A caller inside a transaction reads its own uncommitted writes: only the primary has them.
        return Answer(compute(), "primary", True)
    if _pause.active():
        return _on_primary(compute, "recent_error")
    try:
        status = replica_status()
        if not status.streaming:
            return _on_primary(compute, "not_streaming")
        if status.lag_seconds > float(settings.DATABASE_REPLICA_MAX_LAG):
            return _on_primary(compute, "lagging")
        with _routed_to(REPLICA):
            value = compute()
    except DatabaseError as exc:
        logger.warning("read replica failed, reading from the primary: %s", type(exc).__name__)
        with contextlib.suppress(DatabaseError):
            connections[REPLICA].close()
        _pause.start()
        return _on_primary(compute, "error")
    return Answer(value, "replica", status.is_fresh_from(fresh_from))


def _on_primary(compute: Callable[[], T], reason: str) -> Answer[T]:
    metrics.count_replica_fallback(reason)
    return Answer(compute(), "primary", True)
