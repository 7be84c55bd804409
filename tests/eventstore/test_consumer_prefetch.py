"""Each context's queue has its own prefetch, and so its own share of a busy consumer's batches."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest

from eventstore.consumer import QueueConsumer, prefetch_of
from eventstore.publisher import ConfirmingPublisher, Envelope
from eventstore.topology import broker_connection, work_queue_name
from tests.fixtures.stack import purge_queues

pytestmark = [pytest.mark.stack]

CONTEXTS = ["inventory", "queries"]


@pytest.fixture
def waiting() -> Iterator[None]:
    """Twenty messages waiting in each of the two contexts' queues (nothing handles them here)."""
    purge_queues()
    publisher = ConfirmingPublisher(broker_connection())
    try:
        envelopes = [
            Envelope(
                (context, n), exchange="", routing_key=work_queue_name(context), body=b"{}", message_id=str(n)
            )
            for context in CONTEXTS
            for n in range(20)
        ]
        assert publisher.publish(envelopes) == {}
    finally:
        publisher.close()
    yield
    purge_queues()


def test_each_context_gets_its_own_prefetch_and_the_default_otherwise(settings) -> None:
    settings.CONSUMER_PREFETCH = 300
    settings.CONSUMER_PREFETCH_BY_CONTEXT = {"queries": 1000}

    assert (prefetch_of("queries"), prefetch_of("inventory")) == (1000, 300)


def test_a_consumer_holds_each_queues_own_prefetch_unacked(settings, waiting: None) -> None:
    # given a prefetch of 3 for inventory (the default) and of 7 for queries
    settings.CONSUMER_PREFETCH = 3
    settings.CONSUMER_PREFETCH_BY_CONTEXT = {"queries": 7}
    consumer = QueueConsumer(CONTEXTS)

    # when one consumer of both queues takes what the broker lets it hold, acking nothing
    with broker_connection() as conn:
        consumer._subscribe(conn.channel())
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            try:
                conn.drain_events(timeout=0.3)
            except TimeoutError:
                break
        held = Counter(delivery.context for delivery in consumer._buffer)
    consumer.publisher.close()

    # then it holds exactly each queue's own prefetch (before, the last qos set applied to both)
    assert held == {"inventory": 3, "queries": 7}, held
