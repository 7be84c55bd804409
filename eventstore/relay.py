"""The outbox relay: claim pending rows, publish them with confirms, mark them sent.

In the stack mode the process that commits outbox rows publishes them itself right after the
commit (``eventstore.publish_after_commit``), without a claim: it publishes only rows handed
to it less than half of ``RELAY_MIN_AGE_SECONDS`` ago (the relay leaves younger than that
alone) and marks them sent in one statement. The relay is the safety net that sweeps what was
left behind — unclaimed rows older than ``RELAY_MIN_AGE_SECONDS`` and claims that expired —
every ``RELAY_IDLE_POLL_SECONDS`` while idle. Its bookkeeping statements are not traced: an
idle sweep would be a root span per poll.

The claim is one statement (``FOR UPDATE SKIP LOCKED``, so several relays share the work), and
no row lock is held while talking to the broker. A relay that dies after
publishing but before marking loses nothing: the claim expires, the rows are published
again and the consumers' inbox drops the duplicates.

Only rows the broker confirmed are marked sent. The connection is opened before rows are
claimed (a broker outage costs no attempts), and a batch's publish, confirms included, must
finish within :func:`publish_timeout` — half the claim lease at most — so a stuck publish fails
the batch instead of outliving its claim while another relay publishes the rows again. A row
that comes back unroutable (``basic.return``: no queue bound) on its ``RELAY_MAX_ATTEMPTS``-th
attempt or later goes to the dead letters (consumer ``relay``), where an ADMIN can replay it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection, connections, transaction
from django.db.models import F
from django.utils import timezone
from opentelemetry.instrumentation.utils import suppress_instrumentation

from config import heartbeat, metrics

from . import tracing
from .deadletters import record_dead_letter
from .models import OutboxMessage
from .publisher import CONFIRM_TIMEOUT_SECONDS, ConfirmingPublisher, Envelope, is_unroutable
from .sql import bound_cursor, column, dialect, prepared, table_name

logger = logging.getLogger(__name__)

MAX_FAILURE_BACKOFF_SECONDS = 30.0
DEAD_LETTER_CONSUMER = "relay"


def publish_timeout() -> float:
    """Seconds a batch's publish may take, confirms included: half the claim lease at most."""
    return min(CONFIRM_TIMEOUT_SECONDS, settings.RELAY_CLAIM_SECONDS / 2)


@dataclass(frozen=True, slots=True)
class PassResult:
    """What one relay pass did."""

    claimed: int
    published: int
    dead_lettered: int = 0


def claim_batch(*, batch_size: int) -> list[OutboxMessage]:
    """Claim up to ``batch_size`` due rows in id order, with one statement (its own transaction).

    Due: never claimed and older than ``RELAY_MIN_AGE_SECONDS`` (younger ones are being
    published by the process that committed them), or claimed by someone whose lease expired.
    The rows are locked only for that statement (``SKIP LOCKED`` lets another relay claim
    others); the claim itself is a lease: ``claimed_until`` keeps them from being claimed again
    while they are published, and lets another relay take them over if this one dies.
    """
    now = timezone.now()
    lease_end = now + timedelta(seconds=settings.RELAY_CLAIM_SECONDS)
    born_before = now - timedelta(seconds=settings.RELAY_MIN_AGE_SECONDS)
    skip_locked = " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    table = table_name(OutboxMessage)
    with suppress_instrumentation(), bound_cursor() as cursor:  # autocommit: its own transaction
        cursor.execute(
            f"UPDATE {table} SET claimed_until = %s, attempts = attempts + 1 "
            f"WHERE id IN (SELECT id FROM {table} WHERE sent_at IS NULL "
            f"AND ((claimed_until IS NULL AND created_at <= %s) OR claimed_until <= %s) "
            f"ORDER BY id LIMIT %s{skip_locked}) "
            f"RETURNING {', '.join(_CLAIMED_COLUMNS)}",
            [
                prepared(OutboxMessage, "claimed_until", lease_end),
                prepared(OutboxMessage, "created_at", born_before),
                prepared(OutboxMessage, "claimed_until", now),
                batch_size,
            ],
        )
        fetched = cursor.fetchall()
    rows = [OutboxMessage(**dict(zip(_CLAIMED_COLUMNS, _from_db(values), strict=True))) for values in fetched]
    return sorted(rows, key=lambda row: row.id)


def unclaimed(row_ids: Sequence[int]) -> list[int]:
    """Which of ``row_ids`` are neither sent nor claimed by a relay (one read, no write).

    What a process publishing its own rows right after their commit checks first: those rows
    are younger than ``RELAY_MIN_AGE_SECONDS``, which the relay leaves alone, so the check only
    matters when a relay took a row all the same (an expired lease, a zero minimum age). Between
    this read and the publish a relay may still take one: the row is then published twice and
    the consumers' inbox drops the copy. PostgreSQL only (``= ANY``), as is that publishing.
    """
    if not row_ids:
        return []
    with suppress_instrumentation(), bound_cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {table_name(OutboxMessage)} "
            "WHERE id = ANY(%s) AND sent_at IS NULL AND claimed_until IS NULL",
            [list(row_ids)],
        )
        return [row_id for (row_id,) in cursor.fetchall()]


@contextmanager
def _bookkeeping() -> Iterator[Any]:
    """A transaction of its own for a "sent" mark, committed without waiting for disk.

    It is on the path of every message published, and losing it in a database crash costs
    nothing but a duplicate: a lost mark leaves the row due, the relay publishes it again, and
    the consumers' inbox drops the copy. The rows themselves,
    and everything the handlers record, are committed durably as always.
    """
    with transaction.atomic(), bound_cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
        yield cursor


def hand_back(failures: dict[int, str]) -> None:
    """Leave rows that could not be published to the relay, with their error and the attempt counted.

    They stay unclaimed: the relay's next sweep takes them (and applies its retry pause and
    dead-lettering from there on). One statement per distinct error, usually one in all.
    """
    by_error: dict[str, list[int]] = {}
    for row_id, error in failures.items():
        by_error.setdefault(error[:2000], []).append(row_id)
    with suppress_instrumentation():
        for error, row_ids in by_error.items():
            OutboxMessage.objects.filter(id__in=row_ids, sent_at__isnull=True).update(
                claimed_until=None, last_error=error, attempts=F("attempts") + 1
            )


_CLAIMED_COLUMNS = ("id", "message_id", "exchange", "routing_key", "body", "headers", "attempts")


def _from_db(values: Sequence[Any]) -> list[Any]:
    converted = []
    for name, value in zip(_CLAIMED_COLUMNS, values, strict=True):
        field = column(OutboxMessage, name)
        from_db = getattr(field, "from_db_value", None)
        converted.append(from_db(value, None, connection) if from_db else field.to_python(value))
    return converted


def publish_batch(
    publisher: ConfirmingPublisher, rows: list[OutboxMessage], *, timeout: float | None = None
) -> dict[int, str]:
    """Publish claimed rows; returns ``{row id: error}`` for the rows the broker did not take.

    ``timeout``: seconds the whole publish may take (default :func:`publish_timeout`).
    """
    traced = [
        tracing.start_publish_span(
            routing_key=row.routing_key, message_id=str(row.message_id), headers=dict(row.headers or {})
        )
        for row in rows
    ]
    failures: dict[Any, str] = {row.id: "not published" for row in rows}
    try:
        failures = publisher.publish(
            [_envelope(row, headers) for row, (_, headers) in zip(rows, traced, strict=True)],
            timeout=publish_timeout() if timeout is None else timeout,
        )
    finally:
        for row, (span, _) in zip(rows, traced, strict=True):
            tracing.end_publish_span(span, error=failures.get(row.id))
    failed = {row.id: failures[row.id] for row in rows if row.id in failures}
    metrics.RELAY_PUBLISHED.inc(len(rows) - len(failed))
    metrics.RELAY_FAILED.inc(len(failed))
    return failed


def mark_sent(row_ids: list[int], *, count_attempt: bool = False) -> None:
    """Mark published rows as sent, in one statement (plain SQL: it runs after every publish).

    ``count_attempt``: count the publish as an attempt here (a relay's claim counted its own).
    """
    if not row_ids:
        return
    ids, params = dialect().any_of("id", row_ids)
    attempts = ", attempts = attempts + 1" if count_attempt else ""
    with suppress_instrumentation(), _bookkeeping() as cursor:
        cursor.execute(
            f"UPDATE {table_name(OutboxMessage)} SET sent_at = %s, last_error = ''{attempts} "
            f"WHERE {ids} AND sent_at IS NULL",
            [prepared(OutboxMessage, "sent_at", timezone.now()), *params],
        )


def record_failures(rows: list[OutboxMessage], failures: dict[int, str]) -> int:
    """Keep failed rows pending with their error; they are retried after a growing pause.

    A row the broker returned as unroutable on its ``RELAY_MAX_ATTEMPTS``-th attempt or later
    becomes a dead letter instead (a transport failure never does: the broker being away is
    not the message's fault). Returns how many rows were dead-lettered.
    """
    now = timezone.now()
    dead_lettered = 0
    for row in rows:
        if row.id not in failures:
            continue
        error = failures[row.id]
        if is_unroutable(error) and row.attempts >= settings.RELAY_MAX_ATTEMPTS:
            dead_letter(row, error)
            dead_lettered += 1
            continue
        pause = min(2.0**row.attempts, MAX_FAILURE_BACKOFF_SECONDS, settings.RELAY_CLAIM_SECONDS)
        OutboxMessage.objects.filter(id=row.id).update(
            last_error=error[:2000], claimed_until=now + timedelta(seconds=pause)
        )
    logger.warning("relay: %d of %d messages not published", len(failures), len(rows))
    return dead_lettered


def dead_letter(row: OutboxMessage, error: str) -> None:
    """Move an undeliverable row to the dead letters and settle it, in one transaction."""
    with transaction.atomic():
        record_dead_letter(
            consumer=DEAD_LETTER_CONSUMER,
            raw_body=json.dumps(row.body, separators=(",", ":")).encode(),
            headers=dict(row.headers or {}),
            exchange=row.exchange,
            routing_key=row.routing_key,
            error=error,
            attempts=row.attempts,
            message_id=str(row.message_id),
        )
        OutboxMessage.objects.filter(id=row.id).update(
            sent_at=timezone.now(), last_error=f"dead-lettered: {error}"[:2000]
        )
        transaction.on_commit(metrics.OUTBOX_DEAD_LETTERED.inc)
    logger.error(
        "relay: %s %s dead-lettered after %d attempts: %s",
        row.routing_key,
        row.message_id,
        row.attempts,
        error,
    )


def relay_once(publisher: ConfirmingPublisher, *, batch_size: int | None = None) -> PassResult:
    """Claim, publish and mark one batch.

    The broker connection is opened first: while the broker is away nothing is claimed (and no
    attempt counted); this raises instead.
    """
    publisher.connect(timeout=publish_timeout())
    deadline = time.monotonic() + publish_timeout()  # the lease starts with the claim
    rows = claim_batch(batch_size=batch_size or settings.RELAY_BATCH_SIZE)
    if not rows:
        return PassResult(0, 0)
    failures = publish_batch(publisher, rows, timeout=deadline - time.monotonic())
    _pause_after_publish()
    mark_sent([row.id for row in rows if row.id not in failures])
    dead_lettered = record_failures(rows, failures) if failures else 0
    return PassResult(len(rows), len(rows) - len(failures), dead_lettered)


def relay_until_idle(
    publisher: ConfirmingPublisher, *, batch_size: int | None = None, max_batches: int = 100
) -> int:
    """Relay full batches back to back until a batch is short; returns how many were published."""
    size = batch_size or settings.RELAY_BATCH_SIZE
    published = 0
    for _ in range(max_batches):
        result = relay_once(publisher, batch_size=size)
        published += result.published
        if result.claimed < size:
            break
    return published


def run_relay(stopping: threading.Event, *, batch_size: int | None = None) -> None:
    """Relay until ``stopping`` is set: at once while batches are full, else every
    ``RELAY_IDLE_POLL_SECONDS``."""
    from .topology import broker_connection

    publisher = ConfirmingPublisher(broker_connection())
    size = batch_size or settings.RELAY_BATCH_SIZE
    logger.info("relay running")
    try:
        while not stopping.is_set():
            try:
                result = relay_once(publisher, batch_size=size)
            except Exception:
                logger.exception("relay pass failed")
                close_old_connections()
                stopping.wait(1.0)
                continue
            heartbeat.beat()  # a pass went through: the probes see this loop alive
            if result.claimed < size:
                close_old_connections()
                stopping.wait(settings.RELAY_IDLE_POLL_SECONDS)
    finally:
        publisher.close()


def declare_relay_topology() -> None:
    """Declare every context's queues: they must exist before the relay's first mandatory
    publish, or it comes back unroutable."""
    from .registry import contexts
    from .topology import broker_connection, declare_topology

    with broker_connection() as broker:
        declare_topology(broker, context_names=contexts())


class RelayThread(threading.Thread):
    """The relay as a thread of another long-running process (the Celery worker of the
    single-container stack: ``--with-relay``, config/relay_step.py), one process fewer.

    If it ends other than by :meth:`stop` — its loop survives failed passes, so only a failure
    before its first pass ends it — it calls ``on_failure`` (the host stops itself), as the
    relay's own process would exit: a host that went on without its relay would leave every
    row that missed its publish after commit pending.
    """

    def __init__(self, *, on_failure: Callable[[], None], batch_size: int | None = None) -> None:
        super().__init__(name="relay", daemon=True)
        self._stopping = threading.Event()
        self._on_failure = on_failure
        self._batch_size = batch_size

    def run(self) -> None:
        try:
            declare_relay_topology()
            run_relay(self._stopping, batch_size=self._batch_size)
        except Exception:
            logger.exception("relay stopped by a failure")
        finally:
            connections.close_all()  # this thread's own (Django's connections are per thread)
        if not self._stopping.is_set():
            self._on_failure()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the pass in progress, then return."""
        self._stopping.set()
        self.join(timeout)


def _envelope(row: OutboxMessage, headers: dict[str, Any]) -> Envelope:
    return Envelope(
        key=row.id,
        exchange=row.exchange,
        routing_key=row.routing_key,
        body=json.dumps(row.body, separators=(",", ":")).encode(),
        message_id=str(row.message_id),
        headers=headers,
    )


def _pause_after_publish() -> None:
    # Test hook only (set in config.settings.test): widens the window between publishing and
    # marking so a test can kill the relay inside it.
    pause = float(getattr(settings, "RELAY_PAUSE_AFTER_PUBLISH", 0) or 0)
    if pause > 0:
        time.sleep(pause)
