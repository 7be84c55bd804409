"""Publishing outbox rows right after their commit, against the real RabbitMQ and PostgreSQL.

The committing process hands its rows to a background thread that publishes and marks them,
claiming nothing; the relay only sweeps what that left behind (rows older than
``RELAY_MIN_AGE_SECONDS``).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from eventstore import publish_after_commit
from eventstore.models import OutboxMessage
from eventstore.publisher import ConfirmingPublisher
from eventstore.relay import relay_once
from eventstore.store import send
from eventstore.topology import broker_connection, work_queue_name
from eventstore.unit_of_work import unit_of_work
from tests.eventstore.conftest import send_probe
from tests.fixtures.stack import Stack, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack]


@pytest.fixture
def after_commit(probe_stack: Stack, settings) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    """Publishing after commit on in this process; its thread stopped before the database goes."""
    settings.OUTBOX_PUBLISH_ON_COMMIT = True
    publish_after_commit.stop()
    yield probe_stack
    publish_after_commit.stop()


@pytest.fixture
def publisher() -> Iterator[ConfirmingPublisher]:
    publisher = ConfirmingPublisher(broker_connection())
    yield publisher
    publisher.close()


def _queued_message_ids() -> list[str]:
    """Drain the probe queue: the message ids found there."""
    found = []
    with broker_connection() as conn:
        channel = conn.channel()
        while (message := channel.basic_get(queue=work_queue_name("probe"), no_ack=True)) is not None:
            found.append(str(message.properties.get("message_id")))
        channel.close()
    return found


def _sent(message_id: str) -> bool:
    return OutboxMessage.objects.filter(message_id=message_id, sent_at__isnull=False).exists()


def test_committed_rows_are_published_and_marked_sent_without_any_relay(after_commit: Stack) -> None:
    # given no relay running, when a transaction queueing two commands commits
    with transaction.atomic():
        first = send(context="probe", command="Touch", aggregate_type="probe", aggregate_id="a", data={})
        second = send(context="probe", command="Touch", aggregate_type="probe", aggregate_id="b", data={})
    ids = [first.message_id, second.message_id]

    # then both rows are marked sent within moments, after one attempt, and are in the queue once
    wait_until(lambda: all(_sent(i) for i in ids), timeout=5, message="rows marked sent")
    rows = OutboxMessage.objects.filter(message_id__in=ids)
    assert [(row.attempts, row.last_error) for row in rows] == [(1, ""), (1, "")]
    assert sorted(_queued_message_ids()) == sorted(ids)


def test_a_rolled_back_transaction_publishes_nothing(after_commit: Stack) -> None:
    # given a transaction that queues a command and then fails
    with pytest.raises(RuntimeError), transaction.atomic():
        lost = send(context="probe", command="Touch", aggregate_type="probe", aggregate_id="x", data={})
        raise RuntimeError("the handler failed")

    # when a later transaction commits and its row is published
    kept = send_probe("Touch")
    wait_until(lambda: _sent(kept), timeout=5, message="the committed row sent")
    assert publish_after_commit.wait_idle(5)

    # then only the committed message reached the broker, and the rolled-back row never existed
    assert _queued_message_ids() == [kept]
    assert not OutboxMessage.objects.filter(message_id=lost.message_id).exists()


def test_rows_the_broker_cannot_take_stay_for_the_relay(
    after_commit: Stack, settings, publisher, caplog
) -> None:  # type: ignore[no-untyped-def]
    # given this process's publisher pointed at a vhost that does not exist (the broker refuses it)
    good_url = settings.BROKER_URL
    settings.BROKER_URL = good_url.rsplit("/", 1)[0] + f"/oms_nowhere_{uuid.uuid4().hex[:8]}"

    # when two transactions commit
    ids = [send_probe("Touch"), send_probe("Touch")]
    assert publish_after_commit.wait_idle(10)

    # then the publisher tried and failed, and their rows are neither sent nor claimed: nothing
    # was counted as an attempt
    assert "publish after commit failed" in caplog.text
    rows = OutboxMessage.objects.filter(message_id__in=ids)
    assert [(row.sent_at, row.claimed_until, row.attempts) for row in rows] == [(None, None, 0)] * 2

    # and the relay's next sweep publishes them (RELAY_MIN_AGE_SECONDS is 0 in the test settings)
    settings.BROKER_URL = good_url
    result = relay_once(publisher, batch_size=10)
    assert (result.claimed, result.published) == (2, 2)
    assert all(_sent(i) for i in ids)
    assert sorted(_queued_message_ids()) == sorted(ids)


def test_an_unroutable_row_is_handed_back_to_the_relay_with_its_error(after_commit: Stack, publisher) -> None:  # type: ignore[no-untyped-def]
    # given a committed command no queue is bound for
    with transaction.atomic():
        lost = send(
            context=f"nobody{uuid.uuid4().hex[:6]}",
            command="Arrive",
            aggregate_type="x",
            aggregate_id="1",
            data={},
        )

    # when the publisher has tried it
    wait_until(
        lambda: OutboxMessage.objects.filter(message_id=lost.message_id).exclude(last_error="").exists(),
        timeout=5,
        message="the failure recorded",
    )

    # then it is pending, unclaimed (the relay may take it at once), one attempt counted
    row = OutboxMessage.objects.get(message_id=lost.message_id)
    assert (row.sent_at, row.claimed_until, row.attempts) == (None, None, 1)
    assert "unroutable" in row.last_error
    assert relay_once(publisher, batch_size=10).claimed == 1


def test_a_full_hand_off_queue_drops_the_hand_off_and_the_relay_publishes_the_rows(
    after_commit: Stack, settings, publisher
) -> None:  # type: ignore[no-untyped-def]
    # given room for two rows in this process's queue, when one transaction commits three
    settings.OUTBOX_PUBLISH_MAX_PENDING = 2
    with unit_of_work():
        ids = [
            send(
                context="probe", command="Touch", aggregate_type="probe", aggregate_id=str(n), data={}
            ).message_id
            for n in range(3)
        ]
    assert publish_after_commit.wait_idle(5)

    # then none was claimed or published by it, and the relay publishes all three
    assert OutboxMessage.objects.filter(message_id__in=ids, attempts=0, sent_at=None).count() == 3
    assert relay_once(publisher, batch_size=10).published == 3
    assert sorted(_queued_message_ids()) == sorted(ids)

    # while a transaction that fits is still published after its commit
    fits = send_probe("Touch")
    wait_until(lambda: _sent(fits), timeout=5, message="the row that fits sent")


def test_the_relay_leaves_young_unclaimed_rows_to_their_committer(
    probe_stack: Stack, settings, publisher
) -> None:  # type: ignore[no-untyped-def]
    # given the relay's minimum age at a minute and a fresh row (nobody publishes it after commit)
    settings.RELAY_MIN_AGE_SECONDS = 60
    young = send_probe("Touch")

    # then a relay pass does not claim it
    assert relay_once(publisher, batch_size=10).claimed == 0
    assert OutboxMessage.objects.get(message_id=young).attempts == 0

    # when a claim on a fresh row has expired (its publisher died), the relay takes it at once
    expired = send_probe("Touch")
    OutboxMessage.objects.filter(message_id=expired).update(
        claimed_until=timezone.now() - timedelta(seconds=1), attempts=1
    )
    result = relay_once(publisher, batch_size=10)
    assert (result.claimed, result.published) == (1, 1)
    assert _sent(expired) and not _sent(young)

    # and once the unclaimed row is old enough, it is swept too
    OutboxMessage.objects.filter(message_id=young).update(created_at=timezone.now() - timedelta(seconds=61))
    assert relay_once(publisher, batch_size=10).published == 1
    assert sorted(_queued_message_ids()) == sorted([young, expired])


def test_rows_published_after_commit_are_never_claimed(after_commit: Stack) -> None:
    # when a transaction commits two rows and this process publishes them
    ids = [send_probe("Touch"), send_probe("Touch")]
    wait_until(lambda: all(_sent(i) for i in ids), timeout=5, message="both rows sent")

    # then each row was written once more only, to mark it sent (and count the attempt): no claim
    rows = OutboxMessage.objects.filter(message_id__in=ids)
    assert [(row.claimed_until, row.attempts, row.last_error) for row in rows] == [(None, 1, "")] * 2
    assert sorted(_queued_message_ids()) == sorted(ids)


def test_rows_handed_off_too_long_ago_are_left_to_the_relay(after_commit: Stack, settings, publisher) -> None:  # type: ignore[no-untyped-def]
    # given the relay's minimum age at 0.2 s and this process's publisher held up for longer
    settings.RELAY_MIN_AGE_SECONDS = 0.2
    lane = publish_after_commit._lane()
    with lane._changed:  # the publisher thread cannot take anything while this is held
        young = send_probe("Touch")
        time.sleep(0.3)

    # then it does not publish the row (the relay may be sweeping it by now) ...
    assert publish_after_commit.wait_idle(5)
    assert not _sent(young)
    assert OutboxMessage.objects.get(message_id=young).attempts == 0

    # ... and the relay does
    assert relay_once(publisher, batch_size=10).published == 1
    assert _queued_message_ids() == [young]


def test_a_row_claimed_by_the_relay_is_not_published_again_after_commit(after_commit: Stack) -> None:
    # given a committed row the relay claimed before this process's publisher got to it
    with transaction.atomic():
        message = send(context="probe", command="Touch", aggregate_type="probe", aggregate_id="r", data={})
        OutboxMessage.objects.filter(message_id=message.message_id).update(
            claimed_until=timezone.now() + timedelta(seconds=30), attempts=1
        )
    assert publish_after_commit.wait_idle(5)

    # then it stayed the relay's: not published, not marked, while the next commit's row is
    after = send_probe("Touch")
    wait_until(lambda: _sent(after), timeout=5, message="the next row sent")
    row = OutboxMessage.objects.get(message_id=message.message_id)
    assert (row.sent_at, row.attempts) == (None, 1)
    assert _queued_message_ids() == [after]


@pytest.mark.slow
def test_an_order_completes_over_rabbitmq_with_no_relay_at_all(after_commit: Stack, alice_client) -> None:  # type: ignore[no-untyped-def]
    from inventory.public import upsert_product

    # given consumers publishing their rows after commit, and no relay process anywhere
    after_commit.start_consumer(OUTBOX_PUBLISH_ON_COMMIT="1", RELAY_MIN_AGE_SECONDS="3600")
    upsert_product(product_id="SKU-FAST", name="fast", price=Decimal("4.00"), available=3)

    # when an order is placed through the API
    body = {
        "items": [{"product_id": "SKU-FAST", "quantity": 2}],
        "payment": {"method": "card", "token": "tok_ok"},
    }
    response = alice_client.post("/api/orders", body, format="json")
    assert response.status_code == 202, response.content
    order_id = response.json()["order_id"]

    # then it completes, every message crossing the bus without a relay, none left unsent
    after_commit.wait_until(
        lambda: alice_client.get(f"/api/orders/{order_id}").json()["status"] == "COMPLETED",
        timeout=30,
        message="order completed",
    )
    assert publish_after_commit.wait_idle(5)
    after_commit.wait_until(
        lambda: not OutboxMessage.objects.filter(sent_at__isnull=True).exists(),
        timeout=10,
        message="outbox empty",
    )


def test_a_forked_child_does_not_inherit_the_parents_publisher(after_commit: Stack) -> None:
    # given this process's publisher running (gunicorn's and Celery's masters fork workers)
    publish_after_commit.start()
    parents = publish_after_commit._current
    assert parents is not None

    # when the process forks, then the child holds no publisher (its first hand-off starts one)
    # and the parent keeps its own
    child = os.fork()
    if child == 0:
        os._exit(0 if publish_after_commit._current is None else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert publish_after_commit._current is parents
