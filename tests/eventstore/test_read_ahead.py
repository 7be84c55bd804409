"""A consumer's connection reads what has arrived in bulk, against the real RabbitMQ."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kombu import Connection, Consumer, Queue

from eventstore.publisher import ConfirmingPublisher, Envelope
from eventstore.read_ahead import read_ahead
from eventstore.topology import broker_connection

pytestmark = [pytest.mark.stack]

COUNT = 300


class CountingSocket:
    """The transport's socket, counting its ``recv`` calls."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self.receives = 0

    def recv(self, size: int) -> bytes:
        self.receives += 1
        return bytes(self._sock.recv(size))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


@pytest.fixture
def queue() -> Iterator[str]:
    name = f"test.read_ahead.{uuid.uuid4().hex[:8]}"
    with broker_connection() as conn:
        Queue(name, durable=False, auto_delete=False)(conn.channel()).declare()
    yield name
    with broker_connection() as conn:
        conn.channel().queue_delete(name)


def _fill(queue: str) -> list[bytes]:
    bodies = [f'{{"n": {n}, "pad": "{"x" * (n % 700)}"}}'.encode() for n in range(COUNT)]
    publisher = ConfirmingPublisher(broker_connection())
    try:
        envelopes = [
            Envelope(n, exchange="", routing_key=queue, body=body, message_id=str(n))
            for n, body in enumerate(bodies)
        ]
        assert publisher.publish(envelopes) == {}
    finally:
        publisher.close()
    return bodies


def _receive(conn: Connection, queue: str, count: int) -> list[bytes]:
    received: list[Any] = []
    consumer = Consumer(conn.channel(), queues=[Queue(queue, no_declare=True)], on_message=received.append)
    consumer.qos(prefetch_count=count)
    consumer.consume()
    deadline = time.monotonic() + 10
    while len(received) < count and time.monotonic() < deadline:
        conn.drain_events(timeout=1)
    max(received, key=lambda m: int(m.delivery_tag)).ack(multiple=True)
    return [bytes(message.body) for message in received]


def test_prefetched_deliveries_arrive_whole_with_a_fraction_of_the_reads(queue: str) -> None:
    # given 300 messages of assorted sizes waiting, and a consumer connection reading ahead
    bodies = _fill(queue)
    with broker_connection() as conn:
        conn.connect()
        read_ahead(conn)
        transport = conn.connection.transport
        counting = CountingSocket(transport.sock)
        transport.sock, transport._quick_recv = counting, counting.recv  # py-amqp's own reads too

        # when they are all delivered (three frames each)
        received = _receive(conn, queue, COUNT)

    # then every body arrived intact, in order, with far fewer reads than frames (py-amqp
    # alone makes two per frame: 1,800 here)
    assert received == bodies
    assert counting.receives < COUNT / 3, counting.receives


def test_a_wait_with_nothing_to_read_still_times_out(queue: str) -> None:
    # given a reading-ahead consumer on an empty queue
    with broker_connection() as conn:
        conn.connect()
        read_ahead(conn)
        Consumer(conn.channel(), queues=[Queue(queue, no_declare=True)], on_message=lambda m: None).consume()

        # when it waits for a delivery that never comes, then the wait ends at its timeout
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            conn.drain_events(timeout=0.3)
        assert 0.25 < time.monotonic() - started < 2
