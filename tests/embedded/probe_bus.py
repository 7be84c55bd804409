"""Run by ``test_bus.py`` in a subprocess, in the embedded mode: a throwaway "probe" context.

It registers a handler, migrates a fresh SQLite file, appends one event, lets the in-process
bus deliver it, and prints what happened as JSON for the test to judge. The scenario is the
first argument:

- ``thread``: the dispatcher thread, woken by the commit, delivers it;
- ``drain-twice``: ``drain()`` runs twice;
- ``flaky``: the handler fails on its first call, then succeeds on the retry;
- ``poison``: the handler always fails, so the message ends as a dead letter.
"""

from __future__ import annotations

import json
import sys
import time

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import transaction  # noqa: E402

from eventstore import bus  # noqa: E402
from eventstore.handling import handle  # noqa: E402
from eventstore.messages import Message  # noqa: E402
from eventstore.models import DeadLetter, InboxMessage, OutboxMessage  # noqa: E402
from eventstore.registry import handles  # noqa: E402
from eventstore.store import append  # noqa: E402
from tests.fixtures.events import untyped_event  # noqa: E402

SCENARIO = sys.argv[1]
calls: list[str] = []


@handles("probe", events=("ProbePinged",))
def on_probe_pinged(message: Message) -> None:
    """Count each call; fail where the scenario asks for it."""
    calls.append(message.message_id)
    if SCENARIO == "poison" or (SCENARIO == "flaky" and len(calls) == 1):
        raise RuntimeError(f"probe failure #{len(calls)}")


def append_probe_event() -> Message:
    """One ProbePinged event on a fresh stream, committed with its outbox row."""
    with transaction.atomic():
        [message] = append(
            context="probe",
            aggregate_type="probe",
            aggregate_id="probe-1",
            expected_version=0,
            events=[untyped_event("ProbePinged", {"n": 1})],
            correlation_id="probe-1",
        )
    return message


def wait_until_settled(timeout: float = 15.0) -> None:
    """Drain until the outbox has no pending row (retries are due after a short delay)."""
    deadline = time.monotonic() + timeout
    while OutboxMessage.objects.filter(sent_at__isnull=True).exists():
        if time.monotonic() > deadline:
            raise SystemExit("outbox not settled in time")
        bus.drain()
        time.sleep(0.05)


def run() -> dict[str, object]:
    call_command("migrate", verbosity=0, interactive=False)
    settled_rounds: list[int] = []
    if SCENARIO == "thread":
        dispatcher = bus.start_dispatcher()
        message = append_probe_event()
        deadline = time.monotonic() + 10
        while not calls and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # room for a wrong second delivery to show up
        dispatcher.stop()
        dispatcher.join(timeout=5)
    elif SCENARIO == "drain-twice":
        message = append_probe_event()
        settled_rounds = [bus.drain(), bus.drain()]
    else:
        message = append_probe_event()
        wait_until_settled()
    outbox = OutboxMessage.objects.get(message_id=message.message_id)
    return {
        "message_id": message.message_id,
        "calls": calls,
        "settled_rounds": settled_rounds,
        "inbox_rows": InboxMessage.objects.filter(consumer="probe", message_id=message.message_id).count(),
        "outbox_sent": outbox.sent_at is not None,
        "outbox_attempts": outbox.attempts,
        "dead_letters": list(
            DeadLetter.objects.filter(message_id=message.message_id).values_list("consumer", flat=True)
        ),
        # Handing the same message over once more must have no second effect.
        "handled_again": None if SCENARIO == "poison" else handle("probe", message),
    }


if __name__ == "__main__":
    print("PROBE-RESULT " + json.dumps(run()))
