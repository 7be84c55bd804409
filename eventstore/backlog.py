"""How many messages are still on their way to some contexts: the outbox not yet published,
and (stack mode) what waits in their RabbitMQ work and retry queues.

The saga asks before it sends a stalled step again: a command still queued behind others is
not lost, and sending it again would only add to the queue (a retry storm under load). When
nothing waits and the answer has still not come, the command or its answer was lost.

The projections' catch-up asks :func:`working_through_backlog` before it fills gaps: events
still queued for a live consumer are on their way, not missing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from amqp.exceptions import NotFound
from django.conf import settings

from .models import OutboxMessage
from .topology import broker_connection, retry_queue_name, work_queue_name

logger = logging.getLogger(__name__)

# What "unknown" counts as: a backlog (the safe side is not to send again).
UNKNOWN = 1_000_000


def waiting(contexts: Iterable[str]) -> int:
    """Messages not yet handed to ``contexts``' handlers (0 when their pipeline has drained).

    Unsent outbox rows count whoever they are for (the relay, or the in-process bus, is behind);
    in the stack mode, so do the ready messages of each context's work and retry queues (a queue
    not declared yet holds none). A broker that cannot be asked counts as a backlog.
    """
    pending = OutboxMessage.objects.filter(sent_at__isnull=True).count()
    if pending or getattr(settings, "EMBEDDED", False):
        return pending
    try:
        with broker_connection() as connection:
            channel = connection.channel()
            for context in contexts:
                names = [work_queue_name(context)]
                names += [retry_queue_name(context, delay) for delay in settings.CONSUMER_RETRY_DELAYS]
                for name in names:
                    try:
                        pending += channel.queue_declare(queue=name, passive=True).message_count
                    except NotFound:
                        channel = connection.channel()  # the broker closed the one that asked
    except Exception:  # any doubt counts as a backlog
        logger.warning("could not read the queues' depth: stalled steps wait", exc_info=True)
        return UNKNOWN
    return pending


def working_through_backlog(context: str) -> bool:
    """Whether ``context``'s work queue holds ready messages while a consumer takes from it: its
    handlers are alive and behind. False in the embedded mode (no queue), for a queue nobody
    consumes (the handlers are down), and when the broker cannot be asked."""
    if getattr(settings, "EMBEDDED", False):
        return False
    try:
        with broker_connection() as connection:
            queue = connection.channel().queue_declare(queue=work_queue_name(context), passive=True)
    except Exception:  # no answer: the caller does what it did without asking
        logger.warning("could not read %s's queue", context, exc_info=True)
        return False
    return bool(queue.message_count and queue.consumer_count)
