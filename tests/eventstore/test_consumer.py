"""Consumers against the real RabbitMQ: round trip, duplicates, crashes, retries, dead letters."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from eventstore.deadletters import replay_dead_letter
from eventstore.models import DeadLetter, InboxMessage, OutboxMessage
from eventstore.topology import broker_connection, dead_letter_queue_name, work_queue_name
from tests.eventstore.conftest import effects, probe_command, publish_raw, send_probe
from tests.fixtures.stack import Stack

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack]


def _dlq_messages(context: str) -> list[bytes]:
    """Drain the context's dead-letter queue: the raw bodies found there."""
    bodies = []
    with broker_connection() as conn:
        channel = conn.channel()
        while (message := channel.basic_get(queue=dead_letter_queue_name(context), no_ack=True)) is not None:
            bodies.append(bytes(message.body))
        channel.close()
    return bodies


def _dead_lettered(stack: Stack, context: str) -> list[bytes]:
    """The bodies that reached the context's dead-letter queue, waiting for the first.

    A consumer records the DeadLetter row, then forwards the message to the queue: a test that
    has seen the row may read the queue before the copy arrives.
    """
    found: list[bytes] = []
    stack.wait_until(lambda: found.extend(_dlq_messages(context)) or found, message="dead-letter queue")
    return found


def test_relay_to_rabbitmq_to_consumer_round_trip(probe_stack: Stack) -> None:
    probe_stack.start_consumer("probe")
    probe_stack.start_relay()
    key = uuid.uuid4().hex

    message_id = send_probe("Touch", key=key)

    probe_stack.wait_until(lambda: effects(key) == 1, message="the probe acted")
    assert InboxMessage.objects.filter(consumer="probe", message_id=message_id).count() == 1
    probe_stack.wait_until(
        lambda: OutboxMessage.objects.filter(message_id=message_id, sent_at__isnull=False).exists(),
        message="outbox row marked sent",
    )


def test_the_same_message_delivered_again_after_it_committed_has_one_effect(probe_stack: Stack) -> None:
    # given a message handled, its effect and its inbox row committed
    probe_stack.start_consumer("probe")
    key = uuid.uuid4().hex
    message_id, body = probe_command("Touch", key=key)
    publish_raw(body, routing_key="probe.Touch", message_id=message_id)
    probe_stack.wait_until(
        lambda: InboxMessage.objects.filter(consumer="probe", message_id=message_id).exists(),
        message="first delivery committed",
    )
    assert effects(key) == 1

    # when the very same message is delivered again — in a later batch, so nothing but the
    # inbox can recognise it — and then a later message
    publish_raw(body, routing_key="probe.Touch", message_id=message_id)
    sentinel = uuid.uuid4().hex
    sentinel_id, sentinel_body = probe_command("Touch", key=sentinel)
    publish_raw(sentinel_body, routing_key="probe.Touch", message_id=sentinel_id)

    # then once the later one is handled (the queue is FIFO), the redelivery had no effect
    probe_stack.wait_until(lambda: effects(sentinel) == 1, message="sentinel handled")
    assert effects(key) == 1
    assert InboxMessage.objects.filter(consumer="probe", message_id=message_id).count() == 1


def test_two_copies_of_a_message_in_one_batch_have_one_effect(probe_stack: Stack) -> None:
    probe_stack.start_consumer("probe")
    key = uuid.uuid4().hex
    message_id, body = probe_command("Touch", key=key)

    # when the very same message is published twice at once (one batch), then a later one
    publish_raw(body, routing_key="probe.Touch", message_id=message_id, times=2)
    sentinel = uuid.uuid4().hex
    sentinel_id, sentinel_body = probe_command("Touch", key=sentinel)
    publish_raw(sentinel_body, routing_key="probe.Touch", message_id=sentinel_id)

    # then once the later one is handled, the duplicate had exactly one effect
    probe_stack.wait_until(lambda: effects(sentinel) == 1, message="sentinel handled")
    assert effects(key) == 1
    assert InboxMessage.objects.filter(consumer="probe", message_id=message_id).count() == 1


def test_a_worker_killed_while_handling_gets_the_message_redelivered_and_handled_once(
    probe_stack: Stack, tmp_path: Path
) -> None:
    # given a worker stalled inside the handler's transaction
    worker = probe_stack.start_consumer("probe")
    marker = tmp_path / "slow.marker"
    key = uuid.uuid4().hex
    message_id, body = probe_command("Slow", key=key, marker=str(marker), sleep=60)
    publish_raw(body, routing_key="probe.Slow", message_id=message_id)
    probe_stack.wait_until(marker.exists, message="handler started")

    # when it is killed before committing
    worker.kill()
    assert effects(key) == 0

    # then another worker gets the message again and handles it once
    probe_stack.start_consumer("probe", name="consumer-2")
    probe_stack.wait_until(lambda: effects(key) == 1, message="redelivered and handled")
    assert len(marker.read_text().splitlines()) == 2  # two deliveries
    assert InboxMessage.objects.filter(consumer="probe", message_id=message_id).count() == 1


def test_a_worker_killed_inside_a_batch_of_many_gets_every_message_redelivered_and_each_handled_once(
    probe_stack: Stack, tmp_path: Path
) -> None:
    # given ten messages queued before the worker starts (one batch), the last of which stalls
    # inside the batch's transaction
    keys = [uuid.uuid4().hex for _ in range(10)]
    ids = []
    for key in keys:
        message_id, body = probe_command("Touch", key=key)
        publish_raw(body, routing_key="probe.Touch", message_id=message_id)
        ids.append(message_id)
    marker = tmp_path / "slow.marker"
    slow_key = uuid.uuid4().hex
    slow_id, slow_body = probe_command("Slow", key=slow_key, marker=str(marker), sleep=60)
    publish_raw(slow_body, routing_key="probe.Slow", message_id=slow_id)
    worker = probe_stack.start_consumer("probe")
    probe_stack.wait_until(marker.exists, message="the batch's last handler started")

    # the nine before it ran in the same, still open transaction: nothing of theirs is visible
    # (in an earlier batch of their own they would have committed before it)
    assert [effects(key) for key in keys] == [0] * 10
    assert not InboxMessage.objects.filter(consumer="probe", message_id__in=[*ids, slow_id]).exists()

    # when the worker is killed there
    worker.kill()

    # then another worker gets the whole batch again and every message has exactly one effect
    probe_stack.start_consumer("probe", name="consumer-2")
    probe_stack.wait_until(
        lambda: effects(slow_key) == 1 and all(effects(key) == 1 for key in keys),
        message="batch redelivered and handled",
    )
    assert len(marker.read_text().splitlines()) == 2  # delivered twice
    sentinel = uuid.uuid4().hex
    sentinel_id, sentinel_body = probe_command("Touch", key=sentinel)
    publish_raw(sentinel_body, routing_key="probe.Touch", message_id=sentinel_id)
    probe_stack.wait_until(lambda: effects(sentinel) == 1, message="sentinel handled")
    assert [effects(key) for key in keys] == [1] * 10 and effects(slow_key) == 1
    inbox = InboxMessage.objects.filter(consumer="probe", message_id__in=[*ids, slow_id])
    assert inbox.count() == 11


def test_a_failing_message_is_retried_with_growing_delays_then_dead_lettered_and_can_be_replayed(
    probe_stack: Stack, tmp_path: Path
) -> None:
    # given a message whose handler fails (while the flag file exists)
    probe_stack.start_consumer("probe")
    probe_stack.start_relay()
    attempts_log, fail_flag = tmp_path / "attempts.log", tmp_path / "fail"
    fail_flag.touch()
    key = uuid.uuid4().hex

    message_id = send_probe("Poison", key=key, log=str(attempts_log), fail_while=str(fail_flag))

    # then it is tried once and retried 3 times, each wait longer than the one before
    dead = probe_stack.wait_until(
        lambda: DeadLetter.objects.filter(consumer="probe", message_id=message_id).first(),
        message="dead letter",
    )
    first_try_at: dict[int, float] = {}
    for line in attempts_log.read_text().splitlines():
        retries, at = line.split()
        first_try_at.setdefault(int(retries), float(at))
    assert sorted(first_try_at) == [0, 1, 2, 3]
    waits = [first_try_at[n + 1] - first_try_at[n] for n in range(3)]
    assert waits[0] < waits[1] < waits[2], waits
    assert waits[0] >= 0.18 and waits[1] >= 0.38 and waits[2] >= 0.78, waits  # 0.2, 0.4, 0.8 s
    assert effects(key) == 0

    # and it sits in the dead-letter queue and as a DeadLetter row with its error
    assert [json.loads(body)["message_id"] for body in _dead_lettered(probe_stack, "probe")] == [message_id]
    assert dead.message_type == "Poison"
    assert dead.attempts == 4
    assert "probe poison" in dead.error
    assert dead.routing_key == "probe.Poison" and dead.exchange == "oms.commands"

    # when the cause is fixed and an admin replays it
    fail_flag.unlink()
    replay_dead_letter(dead.id, by="ops-admin")

    # then it is handled once, and the replay is recorded
    probe_stack.wait_until(lambda: effects(key) == 1, message="replayed message handled")
    dead.refresh_from_db()
    assert dead.replayed_by == "ops-admin" and dead.replayed_at is not None
    assert OutboxMessage.objects.filter(message_id=message_id).count() == 2


def test_a_batch_is_acked_whole_and_a_failing_message_in_it_leaves_nothing_unacked(
    probe_stack: Stack, tmp_path: Path
) -> None:
    # given ten good messages and one that always fails, queued before the worker starts (one batch)
    keys = [uuid.uuid4().hex for _ in range(10)]
    for key in keys[:5]:
        publish_raw(
            probe_command("Touch", key=key)[1], routing_key="probe.Touch", message_id=uuid.uuid4().hex
        )
    fail_flag = tmp_path / "fail"
    fail_flag.touch()
    poison_id, poison = probe_command(
        "Poison", key=uuid.uuid4().hex, log=str(tmp_path / "log"), fail_while=str(fail_flag)
    )
    publish_raw(poison, routing_key="probe.Poison", message_id=poison_id)
    for key in keys[5:]:
        publish_raw(
            probe_command("Touch", key=key)[1], routing_key="probe.Touch", message_id=uuid.uuid4().hex
        )

    # when a worker handles them until the poison is dead-lettered
    worker = probe_stack.start_consumer("probe")
    probe_stack.wait_until(
        lambda: DeadLetter.objects.filter(consumer="probe", message_id=poison_id).exists(),
        message="dead letter",
    )
    assert [effects(key) for key in keys] == [1] * 10
    # and a batch that all succeeds (acked with one frame) after it
    more = [uuid.uuid4().hex for _ in range(10)]
    for key in more:
        publish_raw(
            probe_command("Touch", key=key)[1], routing_key="probe.Touch", message_id=uuid.uuid4().hex
        )
    probe_stack.wait_until(lambda: all(effects(key) == 1 for key in more), message="second batch handled")

    # then once the worker is gone, no delivery of the work queue was left unacked (an unacked
    # one would be back in the queue)
    worker.kill()
    with broker_connection() as conn:
        channel = conn.channel()
        declared = channel.queue_declare(queue=work_queue_name("probe"), passive=True)
        channel.close()
    assert declared.message_count == 0


def test_replay_dead_letters_command_replays_only_unreplayed_ones(probe_stack: Stack, tmp_path: Path) -> None:
    from django.core.management import call_command

    probe_stack.start_consumer("probe")
    probe_stack.start_relay()
    attempts_log, fail_flag = tmp_path / "attempts.log", tmp_path / "fail"
    fail_flag.touch()
    key = uuid.uuid4().hex
    message_id = send_probe("Poison", key=key, log=str(attempts_log), fail_while=str(fail_flag))
    dead = probe_stack.wait_until(
        lambda: DeadLetter.objects.filter(message_id=message_id).first(), message="dead letter"
    )
    fail_flag.unlink()

    call_command("replay_dead_letters", context="probe", by="cli")
    call_command("replay_dead_letters", context="probe", by="cli")  # nothing left to replay

    probe_stack.wait_until(lambda: effects(key) == 1, message="replayed")
    dead.refresh_from_db()
    assert dead.replayed_by == "cli"
    assert OutboxMessage.objects.filter(message_id=message_id).count() == 2


def test_an_undecodable_message_goes_straight_to_the_dead_letters(probe_stack: Stack) -> None:
    probe_stack.start_consumer("probe")
    garbage_id = str(uuid.uuid4())

    garbage = b'{"not": "a message", "nul": "\\u0000"'
    publish_raw(garbage, routing_key="probe.Touch", message_id=garbage_id)

    dead = probe_stack.wait_until(
        lambda: DeadLetter.objects.filter(message_id=garbage_id).first(), message="poison dead-lettered"
    )
    assert dead.attempts == 1 and "undecodable" in dead.error
    assert "raw" in dead.body
    assert _dead_lettered(probe_stack, "probe") == [garbage]
