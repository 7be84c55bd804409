"""Publishing to RabbitMQ with pipelined publisher confirms and ``mandatory`` routing.

A whole batch is written to the channel first and the confirms are collected afterwards, so
a batch costs one round trip rather than one per message. A message counts as published only
when the broker acked it and did not return it: a ``basic.return`` (no queue bound for its
routing key), a ``basic.nack`` or a missing confirm is a failure the caller must retry.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import amqp
from kombu import Connection

logger = logging.getLogger(__name__)

CONFIRM_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message to publish; ``key`` is the caller's handle to it in the outcome."""

    key: Hashable
    exchange: str
    routing_key: str
    body: bytes
    message_id: str
    headers: dict[str, Any] = field(default_factory=dict)
    content_type: str = "application/json"


class PublishError(Exception):
    """The broker did not take a message."""


class ConfirmingPublisher:
    """A confirm-mode channel on its own connection, reopened after any error."""

    def __init__(self, connection: Connection, *, confirm_timeout: float = CONFIRM_TIMEOUT_SECONDS) -> None:
        self._connection = connection
        self._confirm_timeout = confirm_timeout
        self._channel: Any = None
        self._next_tag = 1
        self._pending: dict[int, Envelope] = {}
        self._failures: dict[Hashable, str] = {}

    def publish(self, envelopes: Sequence[Envelope]) -> dict[Hashable, str]:
        """Publish ``envelopes`` and wait for their confirms; returns ``{key: error}`` of failures."""
        if not envelopes:
            return {}
        self._pending = {}
        self._failures = {}
        try:
            channel = self._open_channel()
            for envelope in envelopes:
                self._pending[self._next_tag] = envelope
                self._next_tag += 1
                channel.basic_publish(
                    _amqp_message(envelope),
                    exchange=envelope.exchange,
                    routing_key=envelope.routing_key,
                    mandatory=True,
                )
            self._await_confirms()
        except Exception as exc:  # noqa: BLE001 - any transport failure fails the unconfirmed rest
            logger.warning("publish failed: %s", exc)
            self.close()
            for envelope in self._pending.values():
                self._failures.setdefault(envelope.key, f"publish failed: {exc}")
        return dict(self._failures)

    def publish_one(self, envelope: Envelope) -> None:
        """Publish one message; raises :class:`PublishError` when the broker did not take it."""
        failures = self.publish([envelope])
        if failures:
            raise PublishError(next(iter(failures.values())))

    def close(self) -> None:
        """Drop the channel and the connection (the next publish reconnects)."""
        channel, self._channel = self._channel, None
        # Already broken or closing: errors here change nothing, reconnecting is the cure.
        with contextlib.suppress(Exception):
            if channel is not None:
                channel.close()
        with contextlib.suppress(Exception):
            self._connection.close()
        # A closed kombu connection stays closed: the next publish uses a fresh clone.
        self._connection = self._connection.clone()

    def _open_channel(self) -> Any:
        if self._channel is None:
            self._connection.ensure_connection(max_retries=3)
            channel = self._connection.channel()
            channel.confirm_select()
            channel.events["basic_ack"].add(self._on_ack)
            channel.events["basic_nack"].add(self._on_nack)
            channel.events["basic_return"].add(self._on_return)
            self._channel = channel
            self._next_tag = 1
        return self._channel

    def _await_confirms(self) -> None:
        deadline = time.monotonic() + self._confirm_timeout
        while self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PublishError("timed out waiting for publisher confirms")
            try:
                self._connection.connection.drain_events(timeout=remaining)
            except TimeoutError as exc:
                raise PublishError("timed out waiting for publisher confirms") from exc

    def _settle(self, delivery_tag: int, multiple: bool, error: str | None) -> None:
        tags = [tag for tag in self._pending if tag <= delivery_tag] if multiple else [delivery_tag]
        for tag in tags:
            envelope = self._pending.pop(tag, None)
            if envelope is not None and error is not None:
                self._failures.setdefault(envelope.key, error)

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self._settle(delivery_tag, multiple, None)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._settle(delivery_tag, multiple, "nacked by the broker")

    def _on_return(self, exc: Exception, exchange: str, routing_key: str, message: Any) -> None:
        # The broker returns an unroutable message before it acks it: remember the failure now.
        message_id = message.properties.get("message_id", "")
        for envelope in self._pending.values():
            if envelope.message_id == message_id and envelope.routing_key == routing_key:
                self._failures.setdefault(envelope.key, f"unroutable: {exchange} {routing_key} ({exc})")


def _amqp_message(envelope: Envelope) -> amqp.Message:
    return amqp.Message(
        envelope.body,
        content_type=envelope.content_type,
        delivery_mode=2,
        message_id=envelope.message_id,
        application_headers=envelope.headers,
    )
