"""The inbox of a batch: one insert for the whole batch, and still exactly once per message."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
from django.db import transaction
from django.test.utils import CaptureQueriesContext

from eventstore.handling import handle, handle_batch
from eventstore.messages import Message
from eventstore.models import InboxMessage
from tests.eventstore.conftest import effects

pytestmark = pytest.mark.django_db(transaction=True)


def touch(key: str, *, message_id: str | None = None) -> Message:
    return Message(
        message_id=message_id or str(uuid.uuid4()),
        kind="command",
        type="Touch",
        aggregate_type="probe",
        aggregate_id=key,
        data={"key": key},
        occurred_at="2026-11-29T00:00:00Z",
        correlation_id=key,
        causation_id="",
        source="probe",
        headers={},
    )


def test_a_batch_handles_each_new_message_once_and_skips_duplicates_and_handled_ones(probe: str) -> None:
    # given one message handled before, and a batch holding it, a new one twice and another new one
    handled_before, new, other = touch("before"), touch("new"), touch("other")
    handle(probe, handled_before)
    duplicate = touch("new", message_id=new.message_id)

    # when the batch is handled
    outcomes = handle_batch(probe, [handled_before, new, duplicate, other])

    # then every message is reported handled, and each had exactly one effect
    assert outcomes == [None, None, None, None]
    assert (effects("before"), effects("new"), effects("other")) == (1, 1, 1)
    assert InboxMessage.objects.filter(consumer=probe).count() == 3


def test_the_inbox_rows_of_a_batch_are_one_statement(probe: str) -> None:
    batch = [touch(f"k{n}") for n in range(5)]
    with CaptureQueriesContext(transaction.get_connection()) as queries:
        handle_batch(probe, batch)
    inbox_inserts = [
        q for q in queries.captured_queries if "event_inbox" in q["sql"] and "INSERT" in q["sql"]
    ]
    assert len(inbox_inserts) == 1
    assert InboxMessage.objects.filter(consumer=probe).count() == 5


def test_a_failing_message_in_a_batch_does_not_take_the_others_with_it(probe: str, tmp_path) -> None:
    # given a batch with one message that fails
    fail_while = tmp_path / "fail"
    fail_while.touch()
    ok = touch("ok")
    outcomes = handle_batch(probe, [ok, poison_message(str(tmp_path / "log"), str(fail_while))])

    # then the good one is handled once and only the bad one reports its error (no inbox row for it)
    assert outcomes[0] is None and isinstance(outcomes[1], RuntimeError)
    assert effects("ok") == 1
    assert InboxMessage.objects.filter(consumer=probe).count() == 1


def poison_message(log: str, fail_while: str) -> Message:
    key = uuid.uuid4().hex
    return Message(
        message_id=str(uuid.uuid4()),
        kind="command",
        type="Poison",
        aggregate_type="probe",
        aggregate_id=key,
        data={"key": key, "log": log, "fail_while": fail_while},
        occurred_at="2026-11-29T00:00:00Z",
        correlation_id=key,
        causation_id="",
        source="probe",
        headers={},
    )


def test_a_preparer_sees_the_new_messages_of_a_batch_once_before_its_handlers(probe: str) -> None:
    from eventstore.registry import prepares

    # given a preparer of the probe context, and a batch with a duplicate and a handled message
    seen: list[list[str]] = []
    prepares(probe)(lambda messages: seen.append([m.aggregate_id for m in messages]))
    handled_before, new, other = touch("p-before"), touch("p-new"), touch("p-other")
    handle(probe, handled_before)
    seen.clear()

    # when the batch is handled
    handle_batch(probe, [handled_before, new, touch("p-new", message_id=new.message_id), other])

    # then the preparer was called once, before the handlers, with the new messages only
    assert len(seen) == 1
    assert set(seen[0]) == {"p-new", "p-other"}


def test_a_batch_whose_connection_the_server_ended_is_handled_one_by_one_on_a_new_connection(
    probe: str, tmp_path
) -> None:
    # given a batch in the middle of which PostgreSQL ends the connection (pg_terminate_backend)
    severing = replace(touch("sever"), type="Sever", data={"key": "sever", "marker": str(tmp_path / "m")})
    batch = [touch("before-sever"), severing, touch("after-sever")]

    # when it is handled
    outcomes = handle_batch(probe, batch)

    # then the one-by-one pass runs on a new connection, in order: nothing fails, each acts once
    # (on the dead connection every message would fail and go to a retry queue, out of order)
    assert outcomes == [None, None, None]
    assert (effects("before-sever"), effects("sever"), effects("after-sever")) == (1, 1, 1)
