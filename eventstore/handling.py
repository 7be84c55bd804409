"""Handling a message exactly once per context: the inbox row commits with the effect.

Both transports (the RabbitMQ consumers and the in-process bus) call these functions, so
the semantics are the same in both run modes. The consumer counters of handled messages and
dropped duplicates move here, when the transaction holding the inbox rows commits.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from django.db import OperationalError
from django.utils import timezone
from opentelemetry import context as otel_context

from config import metrics

from . import tracing
from .messages import Message
from .models import InboxMessage
from .registry import handlers_for, preparers_of
from .sql import bound_cursor, column_name, dialect
from .store import ConcurrencyError
from .unit_of_work import unit_of_work

logger = logging.getLogger(__name__)

CONFLICT_RETRIES = 5


def handle(context: str, message: Message) -> bool:
    """Apply ``message`` for ``context`` once; ``False`` when it had already been handled.

    A concurrency conflict with another writer of the same aggregate is retried at once,
    since the handler decides again on the fresh state.
    """
    with tracing.consuming(context, message):
        for attempt in range(1, CONFLICT_RETRIES + 1):
            try:
                with unit_of_work():
                    new = _handle_within(context, message)
                    metrics.count_handled(context, handled=int(new), duplicates=int(not new))
                    return new
            except (ConcurrencyError, OperationalError) as exc:
                if attempt == CONFLICT_RETRIES or not _is_conflict(exc):
                    raise
                logger.info("conflict handling %s, retrying", message.type, extra={"attempt": attempt})
    raise AssertionError("unreachable")


def handle_batch(
    context: str, messages: Sequence[Message], carried: Sequence[otel_context.Context] | None = None
) -> list[BaseException | None]:
    """Apply a batch in one unit of work; if any fails, apply them one by one instead.

    The unit writes the batch's events and outbox rows (and whatever the context buffered in
    it) with one statement per table when the batch ends. ``carried``: each message's trace
    context, when the caller has already read them from the headers.

    Returns, for each message, ``None`` when it is handled (or was already), else the error.
    """
    try:
        with unit_of_work():
            new = _record_batch_in_inbox(context, messages)
            # Counted when the batch commits: a batch that fails counts nothing, and the one by
            # one re-run below counts each message it commits.
            metrics.count_handled(context, handled=len(new), duplicates=len(messages) - len(new))
            _prepare(context, [m for m in messages if str(uuid.UUID(m.message_id)) in new])
            contexts = carried if carried is not None else [None] * len(messages)
            for message, carried_by in zip(messages, contexts, strict=True):
                with tracing.consuming(context, message, carried_by):
                    message_id = str(uuid.UUID(message.message_id))
                    if message_id in new:
                        new.discard(message_id)  # a duplicate within the batch runs once
                        _run_handlers(context, message)
        return [None] * len(messages)
    except Exception:  # noqa: BLE001 - isolate the failing message below
        logger.info("batch of %d failed, handling one by one", len(messages))
    outcomes: list[BaseException | None] = []
    for message in messages:
        try:
            handle(context, message)
            outcomes.append(None)
        except Exception as exc:  # noqa: BLE001 - reported per message to the transport
            outcomes.append(exc)
    return outcomes


def _handle_within(context: str, message: Message) -> bool:
    if not _record_in_inbox(context, message):
        return False
    _prepare(context, [message])
    _run_handlers(context, message)
    return True


INBOX_COLUMNS = ("consumer", "message_id", "message_type", "handled_at")


def _prepare(context: str, messages: Sequence[Message]) -> None:
    if messages:
        for prepare in preparers_of(context):
            prepare(messages)


def _run_handlers(context: str, message: Message) -> None:
    for handler in handlers_for(context, message):
        handler(message)


def _record_batch_in_inbox(context: str, messages: Sequence[Message]) -> set[str]:
    """Insert the inbox rows of a batch in one statement; the ids not handled before.

    The dialect's insert: on PostgreSQL one array per column, so the statement's text is the
    same for every batch (the driver parses it once) and no value is quoted row by row.
    """
    now = timezone.now()
    rows = [(context, uuid.UUID(message.message_id), message.type, now) for message in messages]
    sql, params = dialect().insert(InboxMessage, INBOX_COLUMNS, rows)
    field = InboxMessage._meta.get_field("message_id")
    returning = column_name(InboxMessage, "message_id")
    with bound_cursor() as cursor:
        cursor.execute(f"{sql} ON CONFLICT (consumer, message_id) DO NOTHING RETURNING {returning}", params)
        return {str(field.to_python(row[0])) for row in cursor.fetchall()}


def _record_in_inbox(context: str, message: Message) -> bool:
    return bool(_record_batch_in_inbox(context, [message]))


def _is_conflict(exc: BaseException) -> bool:
    if isinstance(exc, ConcurrencyError):
        return True
    text = str(exc).lower()
    return "deadlock" in text or "could not serialize" in text or "database is locked" in text
