"""Publishing to RabbitMQ with pipelined publisher confirms and ``mandatory`` routing.

A whole batch is written to the channel first and the confirms are collected afterwards, so
a batch costs one round trip rather than one per message. Its frames, encoded by py-amqp's own
frame writer, go to the socket together (one write per :data:`WRITE_CHUNK_BYTES`), not one write
per message. A message counts as published only
when the broker acked it and did not return it: a ``basic.return`` (no queue bound for its
routing key), a ``basic.nack``, a missing confirm, or a message never written because the
connection failed before its turn is a failure the caller must retry. The outcome is decided
per message from what the broker confirmed, never from what was not reported as failed.

Every step of a publish (connecting, opening the channel, writing, waiting for the confirms)
shares one time budget, so a broker that stops answering fails the publish in bounded time.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import amqp
from amqp import spec
from amqp.method_framing import frame_writer
from amqp.serialization import dumps
from kombu import Connection

logger = logging.getLogger(__name__)

CONFIRM_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 5.0
CLOSE_TIMEOUT_SECONDS = 1.0
# A batch's frames are written to the socket whenever this much is gathered, and at its end.
WRITE_CHUNK_BYTES = 256 * 1024
# basic.publish: ticket, exchange, routing key, mandatory, immediate.
_PUBLISH_ARGS = "Bssbb"


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


UNROUTABLE = "unroutable"


def is_unroutable(error: str) -> bool:
    """Whether a failure reported by :meth:`ConfirmingPublisher.publish` is a ``basic.return``."""
    return error.startswith(UNROUTABLE)


class ConfirmingPublisher:
    """A confirm-mode channel on its own connection, reopened after any error."""

    def __init__(self, connection: Connection, *, confirm_timeout: float = CONFIRM_TIMEOUT_SECONDS) -> None:
        self._connection = connection
        self._confirm_timeout = confirm_timeout
        self._channel: Any = None
        self._amqp: Any = None  # the py-amqp connection the channel lives on
        self._frames = _Frames()
        self._write_frame: Any = None  # py-amqp's frame writer, writing into self._frames
        self._next_tag = 1
        self._pending: dict[int, Envelope] = {}
        self._acked: set[int] = set()
        self._failures: dict[int, str] = {}

    def connect(self, *, timeout: float | None = None) -> None:
        """Open the connection and the confirm-mode channel now, if not open (raises on failure)."""
        deadline = time.monotonic() + (self._confirm_timeout if timeout is None else timeout)
        try:
            self._open_channel(deadline)
        except Exception:
            self._drop(graceful=False)
            raise

    def publish(self, envelopes: Sequence[Envelope], *, timeout: float | None = None) -> dict[Hashable, str]:
        """Publish ``envelopes`` and wait for their confirms; returns ``{key: error}`` of failures.

        Every envelope the broker did not confirm within ``timeout`` seconds (default: the
        confirm timeout) — for whatever reason — is in the result.
        """
        if not envelopes:
            return {}
        deadline = time.monotonic() + (self._confirm_timeout if timeout is None else timeout)
        self._pending, self._acked, self._failures = {}, set(), {}
        tags: list[int | None] = [None] * len(envelopes)
        unconfirmed = "not confirmed by the broker"
        try:
            channel = self._open_channel(deadline)
            for index, envelope in enumerate(envelopes):
                tag, self._next_tag = self._next_tag, self._next_tag + 1
                tags[index] = tag
                self._pending[tag] = envelope
                self._encode(channel, envelope)
                if self._frames.size >= WRITE_CHUNK_BYTES:
                    self._flush(deadline)
            self._flush(deadline)
            self._await_confirms(deadline)
        except Exception as exc:  # noqa: BLE001 - any transport failure fails the unconfirmed rest
            logger.warning("publish failed: %s", exc)
            self._drop(graceful=False)
            unconfirmed = f"publish failed: {exc}"
        outcome: dict[Hashable, str] = {}
        for envelope, written in zip(envelopes, tags, strict=True):
            if written is None:
                outcome.setdefault(envelope.key, f"{unconfirmed} (not written)")
            elif written in self._failures:
                outcome.setdefault(envelope.key, self._failures[written])
            elif written not in self._acked:
                outcome.setdefault(envelope.key, unconfirmed)
        self._pending, self._acked, self._failures = {}, set(), {}
        return outcome

    def _encode(self, channel: Any, envelope: Envelope) -> None:
        # What channel.basic_publish sends, without its per-message socket work (a
        # non-blocking read and two timeout changes around each write): the batch's frames are
        # gathered and written together by _flush, within the batch's time budget.
        args = dumps(_PUBLISH_ARGS, (0, envelope.exchange, envelope.routing_key, True, False))
        self._write_frame(1, channel.channel_id, spec.Basic.Publish, args, _amqp_message(envelope))

    def _flush(self, deadline: float) -> None:
        data = self._frames.take()
        if data:
            # A write the broker does not read fails at the deadline, not blocks.
            with _bounded(self._amqp, deadline, "publishing"):
                self._amqp.transport.write(data)

    def publish_one(self, envelope: Envelope, *, timeout: float | None = None) -> None:
        """Publish one message; raises :class:`PublishError` when the broker did not take it."""
        failures = self.publish([envelope], timeout=timeout)
        if failures:
            raise PublishError(next(iter(failures.values())))

    def close(self) -> None:
        """Close the channel and the connection, within a second (the next publish reconnects)."""
        self._drop(graceful=True)

    def _drop(self, *, graceful: bool) -> None:
        # After an error the connection is not asked to close: a broker or network that stopped
        # answering would never send the close-ok, and py-amqp waits for it without a timeout.
        channel, self._channel = self._channel, None
        connection, self._amqp = self._amqp, None
        self._frames.take()  # frames of a failed batch are never written
        if graceful and channel is not None and connection is not None:
            deadline = time.monotonic() + CLOSE_TIMEOUT_SECONDS
            with contextlib.suppress(Exception), _bounded(connection, deadline, "closing"):
                channel.close()
                connection.close()
        # Whatever is left goes without a word to the broker; errors here change nothing.
        with contextlib.suppress(Exception):
            self._connection.collect()
        # A closed kombu connection stays closed: the next publish uses a fresh clone.
        self._connection = self._connection.clone()

    def _open_channel(self, deadline: float) -> Any:
        if self._channel is not None:
            return self._channel
        # One attempt, bounded by the budget (the caller's loop retries): kombu's own retries
        # would sleep for seconds between attempts, past a relay's claim on its rows.
        budget = min(CONNECT_TIMEOUT_SECONDS, _remaining(deadline, "connecting"))
        self._connection.connect_timeout = budget  # type: ignore[assignment]  # py-amqp takes floats
        self._connection.ensure_connection(max_retries=0)
        connection = self._connection.connection
        with _bounded(connection, deadline, "opening the channel"):
            channel = connection.channel()
            channel.confirm_select()
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        channel.events["basic_return"].add(self._on_return)
        self._channel, self._amqp = channel, connection
        self._write_frame = frame_writer(connection, self._frames)
        self._next_tag = 1
        return channel

    def _await_confirms(self, deadline: float) -> None:
        # Drain the connection the channel lives on: kombu's ``Connection.connection`` would
        # silently open a new one, on which these confirms can never arrive.
        while self._pending:
            remaining = _remaining(deadline, "waiting for publisher confirms")
            if self._amqp is None or self._channel is None or self._channel.connection is None:
                raise PublishError("connection closed while waiting for publisher confirms")
            try:
                self._amqp.drain_events(timeout=remaining)
            except TimeoutError as exc:
                raise PublishError("timed out waiting for publisher confirms") from exc

    def _settle(self, delivery_tag: int, multiple: bool, error: str | None) -> None:
        tags = [tag for tag in self._pending if tag <= delivery_tag] if multiple else [delivery_tag]
        for tag in tags:
            if self._pending.pop(tag, None) is None:
                continue
            if error is None:
                self._acked.add(tag)
            else:
                self._failures.setdefault(tag, error)

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self._settle(delivery_tag, multiple, None)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._settle(delivery_tag, multiple, "nacked by the broker")

    def _on_return(self, exc: Exception, exchange: str, routing_key: str, message: Any) -> None:
        # The broker returns an unroutable message before it acks it: remember the failure now.
        message_id = message.properties.get("message_id", "")
        for tag, envelope in self._pending.items():
            if envelope.message_id == message_id and envelope.routing_key == routing_key:
                self._failures.setdefault(tag, f"{UNROUTABLE}: {exchange} {routing_key} ({exc})")


class _Frames:
    """Where the frame writer writes: the encoded frames of a batch, until they are flushed."""

    def __init__(self) -> None:
        self._data = bytearray()

    @property
    def size(self) -> int:
        return len(self._data)

    def write(self, data: bytes | memoryview) -> None:
        self._data += data  # copied: the writer reuses its buffer for the next frame

    def take(self) -> bytearray:
        data, self._data = self._data, bytearray()
        return data


def _remaining(deadline: float, doing: str) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise PublishError(f"timed out {doing}")
    return remaining


@contextlib.contextmanager
def _bounded(connection: Any, deadline: float, doing: str) -> Iterator[None]:
    """Socket reads and writes of ``connection`` time out at ``deadline``."""
    try:
        with connection.transport.having_timeout(_remaining(deadline, doing)):
            yield
    except TimeoutError as exc:
        raise PublishError(f"timed out {doing}") from exc


def _amqp_message(envelope: Envelope) -> amqp.Message:
    return amqp.Message(
        envelope.body,
        content_type=envelope.content_type,
        delivery_mode=2,
        message_id=envelope.message_id,
        application_headers=envelope.headers,
    )
