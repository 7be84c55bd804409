"""The RabbitMQ topology of docs/architecture.md "Messages": two topic exchanges and, per context, its queues.

Per context ``c``: the work queue ``oms.c`` bound with each subscription's binding key; one
TTL queue per backoff level, ``oms.c.retry.<delay>ms``, dead-lettering back to ``oms.c``
through the default exchange; and the dead-letter queue ``oms.c.dlq``. Retry queues are
named by their delay so that changing ``CONSUMER_RETRY_DELAYS`` declares new queues instead
of redeclaring old ones with other arguments (which RabbitMQ refuses, PRECONDITION_FAILED).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from kombu import Connection, Exchange, Queue

from .messages import COMMANDS_EXCHANGE, EVENTS_EXCHANGE
from .registry import contexts, subscriptions_of

QUEUE_PREFIX = "oms."


def work_queue_name(context: str) -> str:
    """The queue a context consumes."""
    return f"{QUEUE_PREFIX}{context}"


def retry_queue_name(context: str, delay_seconds: float) -> str:
    """The TTL queue of one backoff level."""
    return f"{work_queue_name(context)}.retry.{_milliseconds(delay_seconds)}ms"


def dead_letter_queue_name(context: str) -> str:
    """Where a message lands after its last retry."""
    return f"{work_queue_name(context)}.dlq"


def exchanges() -> list[Exchange]:
    """The durable topic exchanges for events and for commands."""
    return [
        Exchange(EVENTS_EXCHANGE, type="topic", durable=True),
        Exchange(COMMANDS_EXCHANGE, type="topic", durable=True),
    ]


def queues_of(context: str, *, delays: Iterable[float] | None = None) -> list[Queue]:
    """Every queue of one context: work queue with its bindings, retry queues, dead letters."""
    events, commands = exchanges()
    work = work_queue_name(context)
    bindings = [
        (events if sub.kind == "event" else commands, sub.binding_key) for sub in subscriptions_of(context)
    ]
    queues = [Queue(work, exchange=exchange, routing_key=key, durable=True) for exchange, key in bindings]
    if not queues:
        queues = [Queue(work, durable=True)]
    for delay in delays if delays is not None else settings.CONSUMER_RETRY_DELAYS:
        queues.append(
            Queue(
                retry_queue_name(context, delay),
                durable=True,
                queue_arguments={
                    "x-message-ttl": _milliseconds(delay),
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": work,
                },
            )
        )
    queues.append(Queue(dead_letter_queue_name(context), durable=True))
    return queues


def declare_topology(connection: Connection, *, context_names: Iterable[str] | None = None) -> list[str]:
    """Declare exchanges, queues and bindings (idempotent); returns the queue names declared."""
    channel = connection.channel()
    try:
        for exchange in exchanges():
            exchange(channel).declare()
        declared: list[str] = []
        for context in context_names if context_names is not None else contexts():
            for queue in queues_of(context):
                # A queue with several bindings appears once per binding: declare once, bind each.
                bound = queue(channel)
                if queue.name not in declared:
                    bound.queue_declare()
                    declared.append(queue.name)
                if queue.exchange is not None and queue.exchange.name:
                    bound.queue_bind()
        return declared
    finally:
        channel.close()


def missing_topology(connection: Connection, *, context_names: Iterable[str] | None = None) -> str | None:
    """The first exchange or queue of the topology the broker lacks, or ``None`` when all exist.

    Passive declarations only (nothing is created): the readiness probe's question "has
    ``declare_topology`` run on this broker?". A missing one closes the channel, so the
    check stops at the first.
    """
    names = [(exchange.name, "exchange") for exchange in exchanges()]
    for context in context_names if context_names is not None else contexts():
        names.extend((queue.name, "queue") for queue in queues_of(context))
    channel = connection.channel()
    try:
        checked: set[str] = set()
        for name, kind in names:
            if name in checked:
                continue
            try:
                if kind == "exchange":
                    channel.exchange_declare(exchange=name, type="topic", passive=True)
                else:
                    channel.queue_declare(queue=name, passive=True)
            except connection.channel_errors:
                return f"{kind} {name}"
            checked.add(name)
        return None
    finally:
        try:
            channel.close()
        except (OSError, *connection.connection_errors, *connection.channel_errors):
            pass  # already closed by the broker after a missing name


def broker_connection() -> Connection:
    """A connection to the configured broker (``BROKER_URL``)."""
    return Connection(settings.BROKER_URL, connect_timeout=5)


def _milliseconds(delay_seconds: float) -> int:
    return round(delay_seconds * 1000)
