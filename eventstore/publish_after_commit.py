"""Publishing outbox rows right after the commit that wrote them, from the process that wrote them.

Without this every message waits for the relay's next poll, and an order crosses six hops. Here
the store hands each committed transaction's outbox rows (ids and messages) to one background
thread of the process (``transaction.on_commit``); that thread publishes them as one batch on
its own persistent confirm-mode connection and marks the confirmed ones sent in one statement.
It claims nothing (a claim was one more write of every row): it publishes only rows handed to
it less than half of ``RELAY_MIN_AGE_SECONDS`` ago, younger than anything the relay sweeps, and
leaves older ones (a queue that fell behind) to the relay; a row a relay claimed anyway is
skipped, and the rare row both publish reaches the consumers twice, where their inbox drops
the copy.
The committing thread never waits for the broker: durability is the outbox row, committed
before the hand-off; the relay (``eventstore.relay``) stays the safety net for anything this
did not publish — the broker away, a nack, an unroutable message, a full hand-off queue, a
process that died with rows in its queue.

Stack mode only (``OUTBOX_PUBLISH_ON_COMMIT``, PostgreSQL and RabbitMQ); the embedded mode's
in-process dispatcher is its own delivery. The thread starts on the first hand-off in each
process, so a forking server (gunicorn, Celery prefork) starts one per child, after the fork;
an entry point may call :func:`start` to open the broker connection before the first request.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Sequence

from django.conf import settings
from django.db import close_old_connections, connection

from .messages import Message
from .models import OutboxMessage
from .publisher import ConfirmingPublisher
from .relay import hand_back, mark_sent, publish_batch, publish_timeout, unclaimed

logger = logging.getLogger(__name__)

Committed = Sequence[tuple[int, Message]]
"""One transaction's outbox rows: each row's id and the message it carries."""

# How long the thread waits for work before it tidies its DB connection (CONN_MAX_AGE, a broken
# connection): rarely, since that makes the next statement check the connection first.
IDLE_SECONDS = 5.0
BACK_OFF_SECONDS = 1.0  # after a failure, hand-offs are left to the relay this long
DROP_LOG_EVERY_SECONDS = 10.0


def enabled() -> bool:
    """Whether this process publishes its outbox rows after commit (``OUTBOX_PUBLISH_ON_COMMIT``)."""
    return bool(settings.OUTBOX_PUBLISH_ON_COMMIT)


def hand_off(rows: Committed) -> None:
    """Queue a committed transaction's rows for the background publisher; never blocks.

    When the queue is full (the broker or this thread is behind) the rows are dropped here and
    published by the relay's next sweep instead.
    """
    if rows:
        _lane().offer(list(rows))


def start() -> None:
    """Start this process's background publisher now, if it is enabled and not running."""
    if enabled():
        _lane()


def stop(timeout: float = 5.0) -> None:
    """Stop this process's background publisher (rows still queued are left to the relay)."""
    global _current
    with _guard:
        lane, _current = _current, None
    if lane is not None and lane.pid == os.getpid():
        lane.stop(timeout)


def wait_idle(timeout: float) -> bool:
    """Wait until every row handed off so far was published or left to the relay (tests)."""
    lane = _current
    return lane is None or lane.wait_idle(timeout)


def publish_committed(publisher: ConfirmingPublisher, rows: Committed) -> tuple[int, int]:
    """Publish committed rows and mark them sent; returns (taken, published).

    The broker connection is opened first: while the broker is away nothing is touched (this
    raises instead). Rows a relay claimed or sent meanwhile are skipped; rows the broker did
    not take are handed back to the relay with their error.
    """
    publisher.connect(timeout=publish_timeout())
    taken = set(unclaimed([row_id for row_id, _ in rows]))
    outbox = [_outbox_row(row_id, message) for row_id, message in rows if row_id in taken]
    if not outbox:
        return 0, 0
    failures = publish_batch(publisher, outbox)
    mark_sent([row.id for row in outbox if row.id not in failures], count_attempt=True)
    if failures:
        logger.warning("publish after commit: %d of %d rows left to the relay", len(failures), len(outbox))
        hand_back(failures)
    return len(outbox), len(outbox) - len(failures)


class _Lane:
    """The bounded hand-off queue of one process and the thread that empties it."""

    def __init__(self, *, max_rows: int, batch_rows: int) -> None:
        self.pid = os.getpid()
        self._max_rows = max_rows
        self._batch_rows = batch_rows
        self._changed = threading.Condition()
        self._queued: deque[tuple[float, list[tuple[int, Message]]]] = deque()  # (handed off at, rows)
        self._queued_rows = 0
        self._busy = False
        self._stopping = False
        self._paused_until = 0.0
        self._dropped = 0
        self._dropped_logged_at = 0.0
        self._thread = threading.Thread(target=self._run, name="outbox-publish-after-commit", daemon=True)
        self._thread.start()

    def offer(self, rows: list[tuple[int, Message]]) -> None:
        with self._changed:
            if (
                self._stopping
                or self._queued_rows + len(rows) > self._max_rows
                or time.monotonic() < self._paused_until
            ):
                self._note_dropped(len(rows))
                return
            self._queued.append((time.monotonic(), rows))
            self._queued_rows += len(rows)
            self._changed.notify_all()

    def stop(self, timeout: float) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        self._thread.join(timeout)

    def wait_idle(self, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: not self._queued and not self._busy, timeout)

    def _take(self) -> list[tuple[int, Message]]:
        """Everything queued, up to about one batch; waits up to ``IDLE_SECONDS`` for work.

        Rows handed off longer ago than half ``RELAY_MIN_AGE_SECONDS`` are dropped: by the time
        they would be published the relay may be sweeping them (it publishes them instead).
        """
        max_age = settings.RELAY_MIN_AGE_SECONDS / 2
        with self._changed:
            self._busy = False
            self._changed.notify_all()
            self._changed.wait_for(lambda: self._queued or self._stopping, IDLE_SECONDS)
            taken: list[tuple[int, Message]] = []
            now = time.monotonic()
            while self._queued and len(taken) < self._batch_rows and not self._stopping:
                handed_off_at, rows = self._queued.popleft()
                self._queued_rows -= len(rows)
                if max_age > 0 and now - handed_off_at > max_age:
                    self._note_dropped(len(rows))
                else:
                    taken.extend(rows)
            self._busy = bool(taken)
            return taken

    def _back_off(self) -> None:
        """Drop what is queued and refuse hand-offs for a moment: the relay sweeps those rows."""
        with self._changed:
            self._note_dropped(self._queued_rows)
            self._queued.clear()
            self._queued_rows = 0
            self._paused_until = time.monotonic() + BACK_OFF_SECONDS

    def _note_dropped(self, count: int) -> None:
        self._dropped += count
        now = time.monotonic()
        if count and now - self._dropped_logged_at >= DROP_LOG_EVERY_SECONDS:
            logger.warning("publish after commit: %d outbox rows left to the relay so far", self._dropped)
            self._dropped_logged_at = now

    def _run(self) -> None:
        from .topology import broker_connection

        publisher = ConfirmingPublisher(broker_connection())
        try:
            while not self._stopping:
                try:
                    rows = self._take()
                    if rows:
                        publish_committed(publisher, rows)
                    else:
                        close_old_connections()  # CONN_MAX_AGE and broken connections, while idle
                except Exception:
                    # The broker or the database is away: nothing is lost (the rows are committed),
                    # the relay publishes them; this thread stays for the next commits.
                    logger.exception("publish after commit failed; the relay will publish these rows")
                    with contextlib.suppress(Exception):
                        close_old_connections()
                    self._back_off()
        finally:
            with self._changed:
                self._busy = False
                self._changed.notify_all()
            publisher.close()
            connection.close()  # this thread's own connection


_guard = threading.Lock()
_current: _Lane | None = None


def _lane() -> _Lane:
    """This process's lane, started on first use (and again in a forked child)."""
    global _current
    lane = _current
    if lane is not None and lane.pid == os.getpid():
        return lane
    with _guard:
        if _current is None or _current.pid != os.getpid():
            # A lane inherited through fork has no thread in this process: start a new one.
            _current = _Lane(
                max_rows=settings.OUTBOX_PUBLISH_MAX_PENDING, batch_rows=settings.RELAY_BATCH_SIZE
            )
        return _current


def _outbox_row(row_id: int, message: Message) -> OutboxMessage:
    return OutboxMessage(
        id=row_id,
        message_id=message.message_id,
        exchange=message.exchange,
        routing_key=message.routing_key,
        body=message.to_body(),
        headers=message.headers,
        attempts=1,
    )


def _forget_after_fork() -> None:
    # The parent's thread does not exist in the child, and a lock held across the fork would
    # never be released there: the child starts afresh on its first hand-off.
    global _guard, _current
    _guard = threading.Lock()
    _current = None


os.register_at_fork(after_in_child=_forget_after_fork)
atexit.register(stop, 1.0)
