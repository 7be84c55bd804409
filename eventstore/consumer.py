"""RabbitMQ consumers: one work queue per context, batches handled once, acked after commit.

A batch is handed to :func:`eventstore.handling.handle_batch` (the inbox row commits with the
effect); each message is acked only after that commit. A message that fails is re-published
to the retry queue of its next backoff level (TTL, dead-lettering back to the work queue)
with ``x-oms-retries`` incremented; after the last level it becomes a ``DeadLetter`` row and
goes to ``oms.<context>.dlq``. A body that is not a message at all goes there at once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, close_old_connections, connection
from kombu import Connection, Consumer, Queue
from opentelemetry import trace

from config import heartbeat, metrics

from . import tracing
from .deadletters import record_dead_letter
from .handling import handle, handle_batch
from .messages import InvalidMessage, Message
from .publisher import ConfirmingPublisher, Envelope, PublishError
from .read_ahead import read_ahead
from .topology import (
    broker_connection,
    dead_letter_queue_name,
    declare_topology,
    retry_queue_name,
    work_queue_name,
)

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

RETRIES_HEADER = "x-oms-retries"
ERROR_HEADER = "x-oms-error"
ROUTING_KEY_HEADER = "x-oms-routing-key"
EXCHANGE_HEADER = "x-oms-exchange"

IDLE_WAIT_SECONDS = 1.0
RECONNECT_PAUSE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message as received from one context's queue, not yet acked."""

    context: str
    raw: Any  # kombu.Message

    @property
    def headers(self) -> dict[str, Any]:
        """The AMQP application headers."""
        return dict(self.raw.headers or {})

    @property
    def routing_key(self) -> str:
        """The original routing key (a retried message comes back under its queue's name)."""
        return str(self.headers.get(ROUTING_KEY_HEADER) or self.raw.delivery_info.get("routing_key", ""))

    @property
    def exchange(self) -> str:
        """The exchange the message was first published to."""
        return str(self.headers.get(EXCHANGE_HEADER) or self.raw.delivery_info.get("exchange", ""))

    @property
    def retries(self) -> int:
        """How many times it has been retried already."""
        try:
            return max(0, int(self.headers.get(RETRIES_HEADER, 0)))
        except (TypeError, ValueError):
            return 0

    @property
    def message_id(self) -> str:
        """The AMQP message id (the message's own id)."""
        return str(self.raw.properties.get("message_id") or "")


def decode(delivery: Delivery) -> Message:
    """The message of a delivery; raises ``InvalidMessage`` for a poison body."""
    try:
        body = json.loads(delivery.raw.body)
    except (ValueError, TypeError) as exc:
        raise InvalidMessage(f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidMessage("body is not a JSON object")
    return Message.from_body(body, routing_key=delivery.routing_key, headers=delivery.headers)


class QueueConsumer:
    """Consumes the work queues of some contexts until told to stop."""

    def __init__(
        self,
        context_names: Sequence[str],
        *,
        prefetch: int | None = None,
        batch_size: int | None = None,
    ) -> None:
        self.context_names = list(context_names)
        self.prefetch = prefetch  # every context's, when given; else each its own (prefetch_of)
        self.batch_size = batch_size or settings.CONSUMER_BATCH_SIZE
        self.batch_wait = float(settings.CONSUMER_BATCH_WAIT_MS) / 1000
        self.publisher = ConfirmingPublisher(broker_connection())
        self._buffer: list[Delivery] = []

    def run(self, stopping: threading.Event) -> None:
        """Consume until ``stopping`` is set; the batch in hand is finished and acked first."""
        probe = broker_connection()
        broker_errors = (OSError, *probe.connection_errors, *probe.channel_errors)
        try:
            while not stopping.is_set():
                try:
                    with broker_connection() as conn:
                        self._consume(conn, stopping)
                except broker_errors as exc:
                    logger.warning("broker connection lost (%s); reconnecting", exc)
                    self._buffer = []  # unacked: the broker redelivers them
                    stopping.wait(RECONNECT_PAUSE_SECONDS)
        finally:
            self.publisher.close()

    def _consume(self, conn: Connection, stopping: threading.Event) -> None:
        declare_topology(conn, context_names=self.context_names)
        read_ahead(conn)  # the prefetched deliveries are read in bulk, not frame by frame
        consumers = self._subscribe(conn.channel())
        logger.info("consuming %s", ", ".join(self.context_names))
        while not stopping.is_set():
            self._drain(conn)
            # At most one touch every few seconds (config/heartbeat.py): the exec probes' proof
            # that this loop still drains its queues.
            heartbeat.beat()
        if self._buffer:
            self._process(self._take_buffer())
        for consumer in consumers:
            consumer.cancel()

    def _subscribe(self, channel: Any) -> list[Consumer]:
        """A consumer of each context's queue, each with its own prefetch.

        ``basic.qos`` applies to the consumers a channel starts after it, so each consumer sets
        its prefetch just before it starts. The deliveries of a busy channel come from its queues
        in proportion to their prefetch: that is each context's share of the batches.
        """
        consumers = []
        for context in self.context_names:
            consumer = Consumer(
                channel,
                queues=[Queue(work_queue_name(context), no_declare=True)],
                on_message=lambda raw, context=context: self._buffer.append(Delivery(context, raw)),
                no_ack=False,
            )
            consumer.qos(prefetch_count=self.prefetch or prefetch_of(context))
            consumer.consume()
            consumers.append(consumer)
        return consumers

    def _drain(self, conn: Connection) -> None:
        # Collect until the batch is full or no message came for a moment, then handle it.
        try:
            conn.drain_events(timeout=self.batch_wait if self._buffer else IDLE_WAIT_SECONDS)
            if len(self._buffer) < self.batch_size:
                return
        except TimeoutError:
            if not self._buffer:
                return
        self._process(self._take_buffer())

    def _take_buffer(self) -> list[Delivery]:
        batch, self._buffer = self._buffer, []
        return batch

    def _process(self, deliveries: list[Delivery]) -> None:
        done: list[Delivery] = []
        for context in dict.fromkeys(d.context for d in deliveries):
            done += self._process_context(context, [d for d in deliveries if d.context == context])
        _ack(done, whole_batch=len(done) == len(deliveries))
        close_old_connections()

    def _process_context(self, context: str, deliveries: list[Delivery]) -> list[Delivery]:
        """Handle one context's part of a batch; the deliveries handled (to ack), the others
        already retried, dead-lettered or returned to the queue."""
        decoded: list[tuple[Delivery, Message]] = []
        for delivery in deliveries:
            try:
                decoded.append((delivery, decode(delivery)))
            except InvalidMessage as exc:
                self._dead_letter(delivery, f"undecodable message: {exc}")
        if not decoded:
            return []
        outcomes = handle_messages(context, [message for _, message in decoded])
        if any(_is_database_outage(error) for error in outcomes if error is not None) and not _database_up():
            logger.error("database unavailable; returning %d messages to the queue", len(decoded))
            for delivery, _ in decoded:
                delivery.raw.requeue()
            time.sleep(RECONNECT_PAUSE_SECONDS)
            return []
        handled: list[Delivery] = []
        for (delivery, message), error in zip(decoded, outcomes, strict=True):
            if error is None:
                handled.append(delivery)  # counted as handled (or duplicate) when its effect committed
            else:
                logger.warning(
                    "handling %s failed: %s",
                    message.type,
                    error,
                    extra={"context": context, "correlation_id": message.correlation_id},
                )
                self._retry_or_dead_letter(delivery, error)
        return handled

    def _retry_or_dead_letter(self, delivery: Delivery, error: BaseException) -> None:
        delays = settings.CONSUMER_RETRY_DELAYS
        if delivery.retries >= len(delays):
            self._dead_letter(delivery, f"{type(error).__name__}: {error}")
            return
        headers = delivery.headers | {
            RETRIES_HEADER: str(delivery.retries + 1),
            ERROR_HEADER: f"{type(error).__name__}: {error}"[:500],
            ROUTING_KEY_HEADER: delivery.routing_key,
            EXCHANGE_HEADER: delivery.exchange,
        }
        queue = retry_queue_name(delivery.context, delays[delivery.retries])
        self._forward(delivery, queue, headers)
        metrics.CONSUMER_RETRIED.labels(context=delivery.context).inc()

    def _dead_letter(self, delivery: Delivery, error: str) -> None:
        record_dead_letter(
            consumer=delivery.context,
            raw_body=delivery.raw.body,
            headers=delivery.headers,
            exchange=delivery.exchange,
            routing_key=delivery.routing_key,
            error=error,
            attempts=delivery.retries + 1,
            message_id=delivery.message_id,
        )
        headers = delivery.headers | {ERROR_HEADER: error[:500]}
        self._forward(delivery, dead_letter_queue_name(delivery.context), headers)
        metrics.CONSUMER_DEAD_LETTERED.labels(context=delivery.context).inc()

    def _forward(self, delivery: Delivery, queue: str, headers: dict[str, Any]) -> None:
        # Ack the original only once the broker confirmed the copy: nothing is lost between.
        envelope = Envelope(
            key=0,
            exchange="",
            routing_key=queue,
            body=delivery.raw.body,
            message_id=delivery.message_id,
            headers=headers,
            content_type=str(delivery.raw.content_type or "application/json"),
        )
        try:
            self.publisher.publish_one(envelope)
        except PublishError as exc:
            logger.error("could not forward to %s (%s); returning the message to its queue", queue, exc)
            delivery.raw.requeue()
            return
        delivery.raw.ack()


def prefetch_of(context: str) -> int:
    """How many unacked deliveries of ``context``'s queue a consumer holds (its share, above)."""
    return int(settings.CONSUMER_PREFETCH_BY_CONTEXT.get(context, settings.CONSUMER_PREFETCH))


def _ack(deliveries: list[Delivery], *, whole_batch: bool) -> None:
    """Ack what was handled: when that is the whole batch, with one frame for all of it.

    The batch is every delivery this channel has outstanding (nothing is received while a batch
    is handled), so one ``multiple`` ack of its highest tag acks exactly the batch. When some
    deliveries were retried or returned instead, each handled one is acked alone.
    """
    if not deliveries:
        return
    if whole_batch and len(deliveries) > 1:
        max(deliveries, key=lambda d: int(d.raw.delivery_tag)).raw.ack(multiple=True)
        return
    for delivery in deliveries:
        delivery.raw.ack()


def handle_messages(context: str, messages: list[Message]) -> list[BaseException | None]:
    """Handle a batch for ``context`` within the trace(s) its messages carry."""
    if len(messages) == 1:
        token = tracing.attach_from_headers(messages[0].headers)
        try:
            handle(context, messages[0])
            return [None]
        except Exception as exc:  # noqa: BLE001 - reported to the transport for retry
            return [exc]
        finally:
            tracing.detach(token)
    # One transaction for many traces: the batch span links to each message's trace.
    carried = [tracing.carried_context(m) for m in messages]
    span_contexts = [trace.get_current_span(c).get_span_context() for c in carried]
    links = [trace.Link(span_context) for span_context in span_contexts if span_context.is_valid]
    with tracer.start_as_current_span(f"consume {context}", links=links):
        return handle_batch(context, messages, carried)


def _is_database_outage(error: BaseException) -> bool:
    return isinstance(error, InterfaceError | OperationalError)


def _database_up() -> bool:
    try:
        close_old_connections()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except DatabaseError:
        connection.close()
        return False
