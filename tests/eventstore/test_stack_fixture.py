"""The ``stack`` fixture other suites rely on: relay and ``consume --all`` against the test database."""

from __future__ import annotations

import pytest

from eventstore.registry import contexts
from eventstore.topology import broker_connection, work_queue_name
from tests.fixtures.stack import Stack

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack]


def test_stack_runs_a_relay_and_consumes_every_context_and_stops_gracefully(stack: Stack) -> None:
    assert stack.relay is not None and stack.consumer is not None
    assert stack.relay.alive and stack.consumer.alive
    with broker_connection() as conn:
        channel = conn.channel()
        for context in contexts():
            assert channel.queue_declare(queue=work_queue_name(context), passive=True).consumer_count == 1
        channel.close()

    # SIGTERM: each finishes what it holds and exits cleanly
    assert stack.consumer.stop() == 0, stack.logs()
    assert stack.relay.stop() == 0, stack.logs()
