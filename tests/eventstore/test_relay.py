"""The outbox relay against the real RabbitMQ: confirms, unroutable failures, crash safety."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.db import transaction
from django.utils import timezone

from eventstore.models import DeadLetter, OutboxMessage
from eventstore.publisher import WRITE_CHUNK_BYTES, ConfirmingPublisher, Envelope
from eventstore.relay import RelayThread, relay_once
from eventstore.topology import broker_connection, work_queue_name
from tests.eventstore.conftest import PROBE_MODULE, effects, send_probe
from tests.fixtures.stack import ROOT, Stack, subprocess_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack]


@pytest.fixture
def publisher() -> ConfirmingPublisher:
    publisher = ConfirmingPublisher(broker_connection())
    yield publisher
    publisher.close()


def _queue_depth(name: str) -> int:
    with broker_connection() as conn:
        channel = conn.channel()
        depth = channel.queue_declare(queue=name, passive=True).message_count
        channel.close()
    return depth


def test_relay_publishes_claimed_rows_and_marks_them_sent(probe_stack: Stack, publisher) -> None:  # type: ignore[no-untyped-def]
    # given two probe commands in the outbox (nobody consumes, so they wait in the queue)
    ids = [send_probe("Touch"), send_probe("Touch")]

    # when one relay pass runs
    result = relay_once(publisher, batch_size=10)

    # then both are confirmed by the broker, sit in the probe queue and are marked sent
    assert (result.claimed, result.published) == (2, 2)
    rows = OutboxMessage.objects.filter(message_id__in=ids)
    assert all(row.sent_at is not None and row.attempts == 1 for row in rows)
    assert _queue_depth(work_queue_name("probe")) == 2


def test_an_unroutable_message_is_a_failure_and_stays_pending(probe_stack: Stack, publisher) -> None:  # type: ignore[no-untyped-def]
    # given a row whose routing key no queue is bound to, between two routable ones
    routable_before = send_probe("Touch")
    lost_id = uuid.uuid4()
    with transaction.atomic():
        OutboxMessage.objects.create(
            message_id=lost_id,
            exchange="oms.events",
            routing_key="nobody.NothingHappened",
            body={"message_id": str(lost_id)},
        )
    routable_after = send_probe("Touch")

    # when the relay publishes the batch
    result = relay_once(publisher, batch_size=10)

    # then the unroutable one is not marked sent, carries its error and is retried later
    assert (result.claimed, result.published) == (3, 2)
    lost = OutboxMessage.objects.get(message_id=lost_id)
    assert lost.sent_at is None
    assert "unroutable" in lost.last_error
    assert lost.claimed_until is not None and lost.claimed_until > timezone.now()
    sent = OutboxMessage.objects.filter(
        message_id__in=[routable_before, routable_after], sent_at__isnull=False
    )
    assert sent.count() == 2


def test_a_batch_reaches_the_socket_in_few_writes_and_every_message_is_confirmed(
    probe_stack: Stack, publisher, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    # given an open publisher whose socket writes are counted
    publisher.connect()
    transport = publisher._amqp.transport
    writes: list[int] = []
    write = transport.write
    monkeypatch.setattr(transport, "write", lambda data: (writes.append(len(data)), write(data))[1])

    def batch(count: int, size: int) -> list[Envelope]:
        return [
            Envelope(
                n, exchange="oms.commands", routing_key="probe.Touch", body=b"x" * size, message_id=f"m{n}"
            )
            for n in range(count)
        ]

    # when it publishes 200 small messages, then 40 of 16 KiB (640 KiB in all)
    small = publisher.publish(batch(200, 100))
    small_writes, writes[:] = list(writes), []
    large = publisher.publish(batch(40, 16384))

    # then the broker confirmed every one, the small batch came in one write (not one per
    # message) and the large one in writes of about WRITE_CHUNK_BYTES
    assert small == {} and large == {}
    assert len(small_writes) == 1, small_writes
    assert len(writes) == -(-40 * 16384 // WRITE_CHUNK_BYTES), writes
    assert _queue_depth(work_queue_name("probe")) == 240


def _queued_message_ids(name: str) -> list[str]:
    """Drain a queue: the message ids found there."""
    found = []
    with broker_connection() as conn:
        channel = conn.channel()
        while (message := channel.basic_get(queue=name, no_ack=True)) is not None:
            found.append(str(message.properties.get("message_id")))
        channel.close()
    return found


def test_a_batch_cut_short_by_a_broker_error_marks_sent_only_what_the_broker_confirmed(
    probe_stack: Stack, publisher
) -> None:  # type: ignore[no-untyped-def]
    # given a batch whose 4th row names an exchange that does not exist: the broker closes the
    # channel there, so the rows after it are never written
    before = [send_probe("Touch") for _ in range(3)]
    broken_id = uuid.uuid4()
    with transaction.atomic():
        OutboxMessage.objects.create(
            message_id=broken_id, exchange="oms.nowhere", routing_key="probe.Touch", body={}
        )
    after = [send_probe("Touch") for _ in range(6)]

    # when one relay pass publishes it
    result = relay_once(publisher, batch_size=20)

    # then no row is marked sent unless its message is in the queue (before the fix, the six
    # rows after the break were marked sent and lost)
    assert result.claimed == 10
    sent = {
        str(m)
        for m in OutboxMessage.objects.filter(sent_at__isnull=False).values_list("message_id", flat=True)
    }
    queued = _queued_message_ids(work_queue_name("probe"))
    assert sent <= set(queued), (sent, queued)
    assert sent.isdisjoint(after) and str(broken_id) not in sent
    assert result.published == len(sent)
    pending = OutboxMessage.objects.filter(message_id__in=[broken_id, *after])
    assert all(row.sent_at is None and row.last_error for row in pending)
    assert set(queued) <= set(before)


def test_an_unroutable_row_is_dead_lettered_on_its_last_attempt_and_can_be_replayed(
    probe_stack: Stack, publisher, settings
) -> None:  # type: ignore[no-untyped-def]
    from kombu import Exchange, Queue
    from prometheus_client import REGISTRY

    from eventstore.deadletters import replay_dead_letter

    settings.RELAY_MAX_ATTEMPTS = 3
    counted_before = REGISTRY.get_sample_value("oms_outbox_dead_lettered_total") or 0.0
    # given a command no queue is bound for
    message_id = uuid.uuid4()
    routing_key = f"late{uuid.uuid4().hex[:8]}.Arrive"
    with transaction.atomic():
        row = OutboxMessage.objects.create(
            message_id=message_id,
            exchange="oms.commands",
            routing_key=routing_key,
            body={"message_id": str(message_id), "type": "Arrive", "kind": "command"},
            headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        )

    # when the relay tries it RELAY_MAX_ATTEMPTS times (each after its backoff pause is over)
    results = []
    for _ in range(3):
        OutboxMessage.objects.filter(id=row.id).update(claimed_until=None)
        results.append(relay_once(publisher, batch_size=10))
        row.refresh_from_db()
        if len(results) < 3:
            # then before the last attempt it stays pending, with its error
            assert row.sent_at is None and row.last_error.startswith("unroutable"), row.last_error
            assert not DeadLetter.objects.filter(message_id=message_id).exists()

    # then the last one moves it to the dead letters: settled, visible, counted
    assert [(r.claimed, r.published, r.dead_lettered) for r in results] == [(1, 0, 0), (1, 0, 0), (1, 0, 1)]
    assert row.sent_at is not None and row.last_error.startswith("dead-lettered: unroutable")
    dead = DeadLetter.objects.get(message_id=message_id)
    assert (dead.consumer, dead.exchange, dead.routing_key) == ("relay", "oms.commands", routing_key)
    assert dead.attempts == 3 and "unroutable" in dead.error and dead.body == row.body
    assert REGISTRY.get_sample_value("oms_outbox_dead_lettered_total") == counted_before + 1
    assert relay_once(publisher, batch_size=10).claimed == 0  # not retried any more

    # and once a queue is bound for it, an admin's replay delivers it
    late = Queue(
        f"oms.test-late-{uuid.uuid4().hex[:8]}",
        exchange=Exchange("oms.commands", type="topic", durable=True),
        routing_key=routing_key,
        durable=False,
    )
    with broker_connection() as conn:
        bound = late(conn.channel())
        bound.declare()
        try:
            replay_dead_letter(dead.id, by="ops-admin")
            assert relay_once(publisher, batch_size=10).published == 1
            assert _queued_message_ids(late.name) == [str(message_id)]
        finally:
            bound.delete()


def test_a_transport_failure_never_dead_letters_a_row(probe_stack: Stack, publisher, settings) -> None:  # type: ignore[no-untyped-def]
    # given a row past RELAY_MAX_ATTEMPTS whose publish fails for another reason than routing
    settings.RELAY_MAX_ATTEMPTS = 3
    with transaction.atomic():
        row = OutboxMessage.objects.create(
            message_id=uuid.uuid4(), exchange="oms.nowhere", routing_key="probe.Touch", body={}, attempts=9
        )

    result = relay_once(publisher, batch_size=10)

    # then it stays pending, to be retried
    row.refresh_from_db()
    assert (result.claimed, result.published, result.dead_lettered) == (1, 0, 0)
    assert row.sent_at is None and "NOT_FOUND" in row.last_error
    assert not DeadLetter.objects.filter(message_id=row.message_id).exists()


def test_a_relay_killed_between_publishing_and_marking_loses_nothing_and_duplicates_nothing(
    probe_stack: Stack,
) -> None:
    # given 20 commands in the outbox, a consumer, and a relay that stalls after publishing
    # its first batch, before marking the rows sent
    keys = [uuid.uuid4().hex for _ in range(20)]
    with transaction.atomic():
        for key in keys:
            send_probe("Touch", key=key)
    probe_stack.start_consumer("probe")
    relay = probe_stack.start_relay(RELAY_PAUSE_AFTER_PUBLISH="60", RELAY_CLAIM_SECONDS="1")

    # when every message was published and handled, but none marked sent, the relay is killed
    probe_stack.wait_until(lambda: all(effects(k) == 1 for k in keys), message="first deliveries")
    assert OutboxMessage.objects.filter(sent_at__isnull=True, body__data__key__in=keys).count() == 20
    relay.kill()

    # then a new relay publishes them again once the claim expired, and marks them sent
    probe_stack.start_relay(name="relay-2", RELAY_CLAIM_SECONDS="1")
    probe_stack.wait_until(
        lambda: not OutboxMessage.objects.filter(sent_at__isnull=True, body__data__key__in=keys).exists(),
        message="outbox drained",
    )
    rows = OutboxMessage.objects.filter(body__data__key__in=keys)
    assert sorted({row.attempts for row in rows}) == [2]  # each was published twice

    # and once the consumer is past the duplicates (a later message is handled), each acted once
    sentinel = uuid.uuid4().hex
    send_probe("Touch", key=sentinel)
    probe_stack.wait_until(lambda: effects(sentinel) == 1, message="sentinel")
    assert [effects(k) for k in keys] == [1] * 20


def test_an_idle_relay_records_no_span_and_a_publish_only_its_producer_spans(
    probe_stack: Stack, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    # given a relay writing its spans to a file, polling every 20 ms
    spans_file = tmp_path / "spans.jsonl"

    def spans() -> list[dict]:
        text = spans_file.read_text() if spans_file.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    probe_stack.start_relay(OTEL_SPANS_FILE=str(spans_file), RELAY_IDLE_POLL_SECONDS="0.02")

    # when it idles for dozens of polls, then it records nothing (each poll's claim statement
    # would otherwise be a root span of its own)
    time.sleep(1.5)
    assert spans() == []

    # and when it publishes a row, the publish is traced, its bookkeeping statements are not
    send_probe("Touch")
    probe_stack.wait_until(spans, message="a span recorded")
    time.sleep(0.5)
    assert [(span["kind"], span["name"]) for span in spans()] == [("PRODUCER", "publish probe.Touch")]


def test_the_celery_relay_task_runs_one_pass(probe_stack: Stack) -> None:
    from eventstore.tasks import relay_outbox

    ids = [send_probe("Touch") for _ in range(3)]

    assert relay_outbox() == 3
    assert OutboxMessage.objects.filter(message_id__in=ids, sent_at__isnull=False).count() == 3


def test_prune_outbox_deletes_only_sent_rows_older_than_the_retention() -> None:
    from datetime import timedelta

    from django.conf import settings

    from eventstore.tasks import prune_outbox

    now = timezone.now()
    old = now - timedelta(hours=settings.OUTBOX_RETENTION_HOURS + 1)
    rows = {
        name: OutboxMessage.objects.create(
            message_id=uuid.uuid4(), exchange="oms.events", routing_key="x.Y", body={}, sent_at=sent_at
        )
        for name, sent_at in (("old", old), ("recent", now), ("pending", None))
    }

    assert prune_outbox() == 1
    assert set(
        OutboxMessage.objects.filter(id__in=[r.id for r in rows.values()]).values_list("id", flat=True)
    ) == {
        rows["recent"].id,
        rows["pending"].id,
    }


def test_a_relay_thread_relays_until_stopped(probe_stack: Stack) -> None:
    # given a relay running as a thread of this process (as in the worker's --with-relay)
    failures: list[str] = []
    relay = RelayThread(on_failure=lambda: failures.append("failed"))
    relay.start()
    try:
        # when rows are committed that nobody publishes after commit, then the thread relays them
        ids = [send_probe("Touch") for _ in range(3)]
        probe_stack.wait_until(
            lambda: OutboxMessage.objects.filter(message_id__in=ids, sent_at__isnull=False).count() == 3,
            message="rows relayed by the thread",
        )
        assert _queue_depth(work_queue_name("probe")) == 3
    finally:
        relay.stop()

    # and a stop ends it without calling its failure
    assert not relay.is_alive()
    assert failures == []


def test_a_relay_thread_that_cannot_start_calls_its_failure(settings) -> None:  # type: ignore[no-untyped-def]
    # given a broker nobody listens on (the topology cannot be declared)
    settings.BROKER_URL = "amqp://guest:guest@127.0.0.1:9//"
    failures: list[str] = []
    relay = RelayThread(on_failure=lambda: failures.append("failed"))

    # when it starts, then it ends by itself and calls its failure once, so its host stops
    relay.start()
    relay.join(timeout=60)
    assert not relay.is_alive()
    assert failures == ["failed"]


def test_the_celery_worker_hosts_the_relay_and_beat_when_asked(probe_stack: Stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # given the worker as the single-container stack runs it: beat and the relay as its threads
    log_path = tmp_path / "worker.log"
    schedule = tmp_path / "beat-schedule"
    celery = str(Path(sys.executable).parent / "celery")
    argv = [celery, "-A", "config", "worker", "-Q", "oms.tasks", "--pool=threads", "--concurrency=1"]
    argv += ["--with-beat-thread", f"--schedule-filename={schedule}", "--with-relay", "--loglevel=INFO"]
    env = subprocess_env(EXTRA_SUBSCRIPTION_MODULES=PROBE_MODULE)
    with log_path.open("wb") as log:
        worker = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        # when a row is committed that nobody publishes after commit, then the worker relays it
        message_id = send_probe("Touch")
        probe_stack.wait_until(
            lambda: OutboxMessage.objects.filter(message_id=message_id, sent_at__isnull=False).exists(),
            timeout=60,
            message=f"the worker's relay published the row: {log_path.read_text()[-3000:]}",
        )

        # and its beat thread keeps the schedule and sends the periodic tasks, which it runs
        def beat_sent_and_ran() -> bool:
            log = log_path.read_text()
            sent = "Scheduler: Sending due task sagas-sweep-timeouts" in log  # only beat writes it
            return sent and "Task sagas.tasks.sweep_timeouts[" in log and "] succeeded in " in log

        probe_stack.wait_until(
            beat_sent_and_ran, timeout=60, message="a periodic task sent by the beat thread ran"
        )
        assert list(tmp_path.glob("beat-schedule*")), "no schedule file"
        # and it is one process: no child forked for beat (Celery's own -B would fork one)
        children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()
        assert children == []
    finally:
        worker.terminate()
        code = worker.wait(timeout=60)
        _purge_tasks()
    # and a SIGTERM stops it, its threads included, as a warm shutdown
    assert code == 0, log_path.read_text()[-3000:]


def _purge_tasks() -> None:
    with broker_connection() as conn:
        channel = conn.channel()
        channel.queue_purge(queue="oms.tasks")
        channel.close()
