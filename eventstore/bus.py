"""The in-process bus of the embedded mode: outbox rows dispatched to the same handlers.

After a transaction that wrote outbox rows commits, the one dispatcher thread of the process
is woken; it hands each pending row to every context that subscribes to it (through
:func:`eventstore.handling.handle`, so the inbox semantics are those of the stack mode),
retries failures with the configured backoff and dead-letters a message that keeps failing.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import Q
from django.utils import timezone

from config import metrics

from . import wakeup
from .deadletters import record_dead_letter
from .handling import handle
from .messages import InvalidMessage, Message
from .models import OutboxMessage
from .registry import consumers_of

logger = logging.getLogger(__name__)

_dispatcher: InProcessDispatcher | None = None


def drain(*, limit: int = 100, max_rounds: int = 1000) -> int:
    """Dispatch pending outbox rows until none is due; returns how many rows were settled."""
    settled = 0
    for _ in range(max_rounds):
        done = dispatch_due(limit=limit)
        if not done:
            break
        settled += done
    return settled


def dispatch_due(*, limit: int = 100) -> int:
    """Dispatch one batch of due outbox rows in id order; returns how many were settled."""
    now = timezone.now()
    due = list(
        OutboxMessage.objects.filter(sent_at__isnull=True)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lte=now))
        .order_by("id")[:limit]
    )
    for row in due:
        _dispatch_row(row)
    return len(due)


def _dispatch_row(row: OutboxMessage) -> None:
    try:
        message = Message.from_body(row.body, routing_key=row.routing_key, headers=row.headers)
    except InvalidMessage as exc:
        _settle(row, error=f"invalid message: {exc}")
        return
    failures: list[tuple[str, BaseException]] = []
    for context in consumers_of(message):
        try:
            handle(context, message)
        except Exception as exc:
            logger.warning(
                "in-process handler failed", extra={"context": context, "type": message.type}, exc_info=True
            )
            failures.append((context, exc))
    if not failures:
        _settle(row)  # each context counted its handling when it committed (eventstore.handling)
        return
    delays = settings.CONSUMER_RETRY_DELAYS
    if row.attempts < len(delays):
        for context, _ in failures:
            metrics.CONSUMER_RETRIED.labels(context=context).inc()
        OutboxMessage.objects.filter(id=row.id).update(
            attempts=row.attempts + 1,
            claimed_until=timezone.now() + timedelta(seconds=delays[row.attempts]),
            last_error=str(failures[0][1])[:2000],
        )
        return
    body = json.dumps(row.body).encode()
    with transaction.atomic():
        for context, error in failures:
            record_dead_letter(
                consumer=context,
                raw_body=body,
                headers=row.headers,
                exchange=row.exchange,
                routing_key=row.routing_key,
                error=repr(error),
                attempts=row.attempts + 1,
                message_id=message.message_id,
            )
        _settle(row, error=str(failures[0][1]))
    for context, _ in failures:
        metrics.CONSUMER_DEAD_LETTERED.labels(context=context).inc()


def _settle(row: OutboxMessage, *, error: str = "") -> None:
    OutboxMessage.objects.filter(id=row.id).update(sent_at=timezone.now(), last_error=error[:2000])


class InProcessDispatcher(threading.Thread):
    """The single background thread that runs the bus in the embedded mode."""

    def __init__(self, *, idle_seconds: float = 0.5) -> None:
        super().__init__(name="oms-bus", daemon=True)
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._idle_seconds = idle_seconds

    def wake(self) -> None:
        """Dispatch soon."""
        self._wakeup.set()

    def stop(self) -> None:
        """Finish the current batch and return."""
        self._stopping.set()
        self._wakeup.set()

    def run(self) -> None:
        while not self._stopping.is_set():
            self._wakeup.wait(self._idle_seconds)
            self._wakeup.clear()
            try:
                drain()
            except Exception:
                logger.exception("in-process bus round failed")
            finally:
                close_old_connections()


def start_dispatcher() -> InProcessDispatcher:
    """Start this process's one dispatcher (idempotent)."""
    global _dispatcher
    if _dispatcher is None or not _dispatcher.is_alive():
        _dispatcher = InProcessDispatcher()
        _dispatcher.start()
        wakeup.listen(_dispatcher.wake)
    return _dispatcher
