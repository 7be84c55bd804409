"""Consumer counters move once per effect that committed, read the way /metrics reads them.

A real ``manage.py consume probe`` writes its counters to a ``PROMETHEUS_MULTIPROC_DIR``; the
test sums that directory like the web process does. ``oms_test_probe_effects_total`` is the
probe's business counter (moved on commit, like ``config.metrics``'s order and payment counters).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from eventstore.models import DeadLetter, InboxMessage
from tests.eventstore.conftest import effects, probe_command, publish_raw
from tests.fixtures.stack import Stack

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack]


def _counters(directory: Path) -> dict[str, float]:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))

    def value(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    return {
        "handled": value("oms_consumer_messages_handled_total", context="probe"),
        "duplicates": value("oms_consumer_messages_duplicates_total", context="probe"),
        "retried": value("oms_consumer_messages_retried_total", context="probe"),
        "dead_lettered": value("oms_consumer_messages_dead_lettered_total", context="probe"),
        "effects": value("oms_test_probe_effects_total"),
    }


@pytest.fixture
def metrics_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    return directory


def test_a_batch_with_a_poison_message_counts_each_good_message_once(
    probe_stack: Stack, metrics_dir: Path, tmp_path: Path
) -> None:
    # given three good messages and a poison one, queued before the consumer starts (one batch)
    fail_while = tmp_path / "fail"
    fail_while.touch()
    keys = [uuid.uuid4().hex for _ in range(3)]
    for key in keys[:2]:
        _publish_touch(key)
    poison_id, poison_body = probe_command(
        "Poison", key=uuid.uuid4().hex, log=str(tmp_path / "log"), fail_while=str(fail_while)
    )
    publish_raw(poison_body, routing_key="probe.Poison", message_id=poison_id)
    _publish_touch(keys[2])

    # when the consumer handles the batch: it fails, is re-run one by one, and the poison
    # message is retried until it is dead-lettered
    consumer = probe_stack.start_consumer("probe", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    probe_stack.wait_until(
        lambda: DeadLetter.objects.filter(message_id=poison_id).exists(), message="poison dead-lettered"
    )
    probe_stack.wait_until(lambda: all(effects(key) == 1 for key in keys), message="good ones handled")
    assert "batch of 4 failed, handling one by one" in consumer.log(), consumer.log()[-3000:]

    # then the good messages' counters moved exactly once each, the poison's never as handled
    probe_stack.wait_until(
        lambda: _counters(metrics_dir)["dead_lettered"] == 1, message="dead letter counted"
    )
    assert _counters(metrics_dir) == {
        "handled": 3,
        "duplicates": 0,
        "retried": 3,
        "dead_lettered": 1,
        "effects": 3,
    }


def test_a_message_delivered_again_after_it_committed_is_counted_as_a_duplicate_not_handled(
    probe_stack: Stack, metrics_dir: Path
) -> None:
    # given a message handled and committed
    probe_stack.start_consumer("probe", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    key = uuid.uuid4().hex
    message_id, body = _publish_touch(key)
    probe_stack.wait_until(
        lambda: InboxMessage.objects.filter(consumer="probe", message_id=message_id).exists(),
        message="first delivery committed",
    )

    # when it is delivered again (a redelivery), then a later message
    publish_raw(body, routing_key="probe.Touch", message_id=message_id)
    sentinel = uuid.uuid4().hex
    _publish_touch(sentinel)
    probe_stack.wait_until(lambda: effects(sentinel) == 1, message="sentinel handled")

    # then the redelivery had no effect and is counted as a duplicate, not as handled
    probe_stack.wait_until(lambda: _counters(metrics_dir)["handled"] >= 2, message="sentinel counted")
    assert effects(key) == 1
    assert _counters(metrics_dir) == {
        "handled": 2,
        "duplicates": 1,
        "retried": 0,
        "dead_lettered": 0,
        "effects": 2,
    }


def _publish_touch(key: str) -> tuple[str, bytes]:
    """Publish a Touch for ``key``; its message id and body."""
    message_id, body = probe_command("Touch", key=key)
    publish_raw(body, routing_key="probe.Touch", message_id=message_id)
    return message_id, body
