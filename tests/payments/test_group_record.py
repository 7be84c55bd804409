"""Charge decisions stored together: many runners' decisions in one transaction, none lost when that fails."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from payments.charging import _in_turn
from payments.domain import AttemptOutcome, Payment
from payments.group_record import GroupRecorder
from payments.handlers import Decision, load_payment, record
from payments.models import PaymentRecord, PaymentSecret

from .conftest import stream_types

pytestmark = pytest.mark.django_db(transaction=True)

CAPTURE = _in_turn(lambda p: p.record_attempt(outcome=AttemptOutcome.CAPTURED), lambda p: p.capture())


@pytest.fixture
def recorder() -> Iterator[GroupRecorder]:
    found = GroupRecorder()
    found.start()
    try:
        yield found
    finally:
        found.stop(timeout=10)


def _claimed(order_id: str) -> Payment:
    """A runner's view of its payment: claimed, as its claim read it."""
    PaymentRecord.objects.filter(pk=order_id).update(claimed_until=timezone.now() + timedelta(minutes=1))
    return load_payment(order_id)


def _transactions_of(order_ids: list[str]) -> dict[str, str]:
    """The transaction that stored each payment's capture (the event store's ``tx`` column)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT aggregate_id, tx::text FROM event_store WHERE aggregate_id = ANY(%s) "
            "AND event_type = 'PaymentProcessed'",
            [[f"payment-{order_id}" for order_id in order_ids]],
        )
        return {aggregate_id.removeprefix("payment-"): tx for aggregate_id, tx in cursor.fetchall()}


def _in_thread(
    recorder: GroupRecorder, order_id: str, decide: Decision, known: Payment, results: dict
) -> threading.Thread:
    def run() -> None:
        try:
            results[order_id] = recorder.record(order_id, decide, cause_id="", known=known)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_decisions_queued_while_one_is_stored_are_stored_together(recorder, requested) -> None:
    # given four runners with claimed payments, the first one's decision held up while it is stored
    order_ids = [requested() for _ in range(4)]
    known = {order_id: _claimed(order_id) for order_id in order_ids}
    entered, go_on = threading.Event(), threading.Event()

    def held_capture(payment: Payment):  # type: ignore[no-untyped-def]
        entered.set()
        assert go_on.wait(10)
        return CAPTURE(payment)

    results: dict[str, tuple[Payment, bool]] = {}
    first = _in_thread(recorder, order_ids[0], held_capture, known[order_ids[0]], results)
    assert entered.wait(10)

    # when the three others decide meanwhile, and then the first one goes on
    others = [_in_thread(recorder, order_id, CAPTURE, known[order_id], results) for order_id in order_ids[1:]]
    go_on.set()
    for thread in [first, *others]:
        thread.join(20)

    # then every payment is captured once, its claim released and its card token deleted
    assert {
        order_id: (payment.status.value, released) for order_id, (payment, released) in results.items()
    } == {order_id: ("CAPTURED", True) for order_id in order_ids}
    for order_id in order_ids:
        assert stream_types(order_id).count("PaymentProcessed") == 1
    rows = PaymentRecord.objects.filter(pk__in=order_ids)
    assert {(row.status, row.claimed_until) for row in rows} == {("CAPTURED", None)}
    assert not PaymentSecret.objects.filter(pk__in=order_ids).exists()

    # and the three that queued were stored by one transaction, apart from the first one's
    stored_by = _transactions_of(order_ids)
    assert len({stored_by[order_id] for order_id in order_ids[1:]}) == 1
    assert stored_by[order_ids[0]] != stored_by[order_ids[1]]


def test_a_batch_that_fails_leaves_each_decision_to_its_runner(recorder, requested) -> None:
    # given two runners whose decisions are stored together, one of them deciding on a stale
    # state (another writer appended to its stream after the runner last read it)
    stale_id, sound_id = requested(), requested()
    stale, sound = _claimed(stale_id), _claimed(sound_id)
    record(stale_id, lambda p: p.record_attempt(outcome=AttemptOutcome.TRANSIENT, error="a blip"))
    entered, go_on = threading.Event(), threading.Event()

    def held(payment: Payment):  # type: ignore[no-untyped-def]
        entered.set()
        assert go_on.wait(10)
        return []

    results: dict[str, tuple[Payment, bool]] = {}
    holder = _in_thread(recorder, sound_id, held, sound, {})
    assert entered.wait(10)
    threads = [
        _in_thread(recorder, stale_id, CAPTURE, stale, results),
        _in_thread(recorder, sound_id, CAPTURE, sound, results),
    ]
    go_on.set()
    for thread in [holder, *threads]:
        thread.join(20)

    # then both are captured all the same: the stale one decided again on its reloaded stream
    assert {order_id: payment.status.value for order_id, (payment, _) in results.items()} == {
        stale_id: "CAPTURED",
        sound_id: "CAPTURED",
    }
    assert stream_types(stale_id) == [
        "PaymentRequested",
        "PaymentAttempted",
        "PaymentAttempted",
        "PaymentProcessed",
    ]
    assert stream_types(sound_id) == ["PaymentRequested", "PaymentAttempted", "PaymentProcessed"]
    assert set(
        PaymentRecord.objects.filter(pk__in=[stale_id, sound_id]).values_list("claimed_until", flat=True)
    ) == {None}


def test_a_stopped_recorder_stores_each_decision_at_once(requested) -> None:
    stopped = GroupRecorder()
    order_id = requested()
    payment, released = stopped.record(order_id, CAPTURE, cause_id="", known=_claimed(order_id))
    assert (payment.status.value, released) == ("CAPTURED", True)
    assert PaymentRecord.objects.get(pk=order_id).claimed_until is None
