"""Retention on PostgreSQL: sent outbox rows and old inbox rows go, in bounded batches; what a
redelivery or a replay may still need stays; the event store is never pruned."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.test import override_settings
from django.utils import timezone

from config.metrics import PRUNED_ROWS
from eventstore import retention
from eventstore.models import DeadLetter, InboxMessage, OutboxMessage, StoredEvent

pytestmark = pytest.mark.django_db

NOW = timezone.now()
DAY = timedelta(days=1)


def outbox_row(*, sent_at=None, message_id=None) -> OutboxMessage:  # type: ignore[no-untyped-def]
    return OutboxMessage.objects.create(
        message_id=message_id or uuid.uuid4(),
        exchange="oms.events",
        routing_key="probe.Touched",
        body={},
        sent_at=sent_at,
    )


def inbox_row(consumer: str, handled_at, message_id=None) -> InboxMessage:  # type: ignore[no-untyped-def]
    return InboxMessage.objects.create(
        consumer=consumer,
        message_id=message_id or uuid.uuid4(),
        message_type="Touched",
        handled_at=handled_at,
    )


def dead_letter(message_id: uuid.UUID, *, consumer: str, replayed: bool) -> DeadLetter:
    return DeadLetter.objects.create(
        consumer=consumer,
        message_id=message_id,
        message_type="Touched",
        exchange="oms.events",
        routing_key="probe.Touched",
        body={},
        replayed_at=NOW if replayed else None,
    )


def remaining(model, rows) -> set[int]:  # type: ignore[no-untyped-def]
    return set(model.objects.filter(id__in=[r.id for r in rows]).values_list("id", flat=True))


def pruned(table: str) -> float:
    return PRUNED_ROWS.labels(table=table)._value.get()


def test_outbox_rows_go_once_sent_and_past_the_retention_in_bounded_batches() -> None:
    old = NOW - timedelta(hours=settings.OUTBOX_RETENTION_HOURS, minutes=1)
    sent_long_ago = [outbox_row(sent_at=old - timedelta(seconds=i)) for i in range(5)]
    recent = outbox_row(sent_at=NOW - timedelta(hours=1))
    never_sent = outbox_row()
    OutboxMessage.objects.filter(id=never_sent.id).update(created_at=old - DAY)
    counted = pruned("outbox")

    # a run deletes at most PRUNE_MAX_BATCHES batches of PRUNE_BATCH_SIZE rows
    with override_settings(PRUNE_BATCH_SIZE=2, PRUNE_MAX_BATCHES=2):
        assert retention.prune_outbox(now=NOW) == 4
        assert len(remaining(OutboxMessage, sent_long_ago)) == 1
        # and the next run takes the rest
        assert retention.prune_outbox(now=NOW) == 1
        assert retention.prune_outbox(now=NOW) == 0

    # the oldest went first; a recent sent row and an unsent one (however old) stay
    assert remaining(OutboxMessage, [*sent_long_ago, recent, never_sent]) == {recent.id, never_sent.id}
    assert pruned("outbox") == counted + 5


def test_inbox_rows_go_past_the_retention_counted_from_their_consumers_last_message() -> None:
    retention_days = timedelta(days=settings.INBOX_RETENTION_DAYS)
    # a busy consumer (last message now) and one stopped for 30 days
    busy_old = inbox_row("busy", NOW - retention_days - timedelta(minutes=1))
    busy_recent = inbox_row("busy", NOW - retention_days + timedelta(minutes=1))
    busy_last = inbox_row("busy", NOW)
    stopped_last = inbox_row("stopped", NOW - 30 * DAY)
    stopped_before = inbox_row("stopped", NOW - 30 * DAY - retention_days + timedelta(minutes=1))
    stopped_older = inbox_row("stopped", NOW - 30 * DAY - retention_days - timedelta(minutes=1))
    rows = [busy_old, busy_recent, busy_last, stopped_last, stopped_before, stopped_older]
    counted = pruned("inbox")

    assert retention.prune_inbox(now=NOW) == 2

    # the stopped consumer keeps what it handled within the retention before it stopped: a
    # delivery it left unacked finds its row when it comes back
    assert remaining(InboxMessage, rows) == {busy_recent.id, busy_last.id, stopped_last.id, stopped_before.id}
    assert pruned("inbox") == counted + 2


def test_inbox_rows_a_pending_publish_or_an_unreplayed_dead_letter_may_need_are_kept() -> None:
    old = NOW - timedelta(days=settings.INBOX_RETENTION_DAYS) - DAY
    inbox_row("sagas", NOW)
    inbox_row("queries", NOW)
    # a message whose outbox row is still unsent (published, not marked: it will come again)
    unsent = outbox_row(sent_at=None)
    kept_for_publish = inbox_row("sagas", old, unsent.message_id)
    # a message one context dead-lettered: its replay goes to every context again
    failed_id = uuid.uuid4()
    dead_letter(failed_id, consumer="payments", replayed=False)
    kept_for_replay = inbox_row("sagas", old, failed_id)
    # once replayed (and its outbox row sent), nothing keeps it
    replayed_id = uuid.uuid4()
    dead_letter(replayed_id, consumer="payments", replayed=True)
    outbox_row(sent_at=NOW, message_id=replayed_id)
    gone_after_replay = inbox_row("queries", old, replayed_id)
    plain_old = inbox_row("queries", old)

    assert retention.prune_inbox(now=NOW) == 2

    rows = [kept_for_publish, kept_for_replay, gone_after_replay, plain_old]
    assert remaining(InboxMessage, rows) == {kept_for_publish.id, kept_for_replay.id}


def test_the_inbox_prune_is_bounded_per_run() -> None:
    old = NOW - timedelta(days=settings.INBOX_RETENTION_DAYS) - DAY
    inbox_row("sagas", NOW)
    rows = [inbox_row("sagas", old - timedelta(seconds=i)) for i in range(7)]

    with override_settings(PRUNE_BATCH_SIZE=3, PRUNE_MAX_BATCHES=2):
        assert retention.prune_inbox(now=NOW) == 6
        assert retention.prune_inbox(now=NOW) == 1

    assert remaining(InboxMessage, rows) == set()


def test_the_event_store_is_never_pruned() -> None:
    from eventstore.store import append
    from tests.fixtures.events import untyped_event

    aggregate_id = f"retention-{uuid.uuid4()}"
    append(
        context="retention",
        aggregate_type="Probe",
        aggregate_id=aggregate_id,
        expected_version=0,
        events=[untyped_event("Touched", {})],
    )
    before = StoredEvent.objects.count()

    # even ten years on, with every retention passed
    later = NOW + timedelta(days=3650)
    retention.prune_outbox(now=later)
    retention.prune_inbox(now=later)

    assert StoredEvent.objects.count() == before
    assert StoredEvent.objects.filter(aggregate_id=aggregate_id).exists()


def test_the_prunes_are_scheduled_and_a_short_inbox_retention_is_refused() -> None:
    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"eventstore.tasks.prune_outbox", "eventstore.tasks.prune_inbox"} <= tasks
    assert not [m for m in run_checks() if m.id == "eventstore.E001"]

    with override_settings(INBOX_RETENTION_DAYS=0):
        assert [m.id for m in run_checks() if m.id.startswith("eventstore.")] == ["eventstore.E001"]
    # a day is not enough when a saga may wait longer than a tenth of it
    with override_settings(INBOX_RETENTION_DAYS=1, SAGA_TIMEOUT=86400.0):
        assert [m.id for m in run_checks() if m.id.startswith("eventstore.")] == ["eventstore.E001"]
