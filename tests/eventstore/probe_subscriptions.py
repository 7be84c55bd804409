"""A throwaway "probe" context for transport tests; consumer subprocesses load it too.

Effects are events appended to a ``probe-<key>`` stream, so a test counts effects by counting
that stream's rows. Behaviour is driven by the command's data:

- ``Touch``: one effect.
- ``Slow``: on the first delivery (its ``marker`` file does not exist yet) create the marker
  and sleep ``sleep`` seconds inside the transaction, then one effect.
- ``Sever``: on the first delivery (its ``marker`` file does not exist yet) create the marker
  and have PostgreSQL end this connection (as an operator's ``pg_terminate_backend`` would),
  then one effect.
- ``Poison``: log ``<x-oms-retries> <time>`` to the ``log`` file, and fail while the
  ``fail_while`` file exists; once it is gone, one effect.

Each effect also moves the counter ``oms_test_probe_effects_total`` once its transaction
commits (the way the contexts count business facts, ``config.metrics``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from django.db import connection, transaction
from prometheus_client import Counter

from eventstore.messages import Message
from eventstore.registry import handles
from eventstore.store import append, stream_version
from tests.fixtures.events import untyped_event

CONTEXT = "probe"

EFFECTS = Counter("oms_test_probe_effects", "Test probe: effects committed.")


def effect_stream(key: str) -> str:
    """The stream whose length is the number of effects of ``key``."""
    return f"probe-{key}"


def touch(message: Message) -> None:
    """Record one effect of ``message`` in its key's stream."""
    stream = effect_stream(message.data["key"])
    append(
        context=CONTEXT,
        aggregate_type=CONTEXT,
        aggregate_id=stream,
        expected_version=stream_version(stream),
        events=[untyped_event("ProbeTouched", {"message_id": message.message_id})],
        correlation_id=message.correlation_id,
        causation_id=message.message_id,
    )
    transaction.on_commit(EFFECTS.inc)


def slow(message: Message) -> None:
    """Stall inside the transaction the first time, so a test can kill the worker there."""
    marker = Path(message.data["marker"])
    with marker.open("a") as log:
        log.write(f"{os.getpid()}\n")
    if len(marker.read_text().splitlines()) == 1:
        time.sleep(float(message.data["sleep"]))
    touch(message)


def sever(message: Message) -> None:
    """End this database connection from the server side the first time."""
    marker = Path(message.data["marker"])
    if not marker.exists():
        marker.touch()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    touch(message)


def poison(message: Message) -> None:
    """Fail while the ``fail_while`` file exists, logging each attempt."""
    with Path(message.data["log"]).open("a") as log:
        log.write(f"{message.headers.get('x-oms-retries', '0')} {time.time()}\n")
    if Path(message.data["fail_while"]).exists():
        raise RuntimeError("probe poison")
    touch(message)


def ignore(message: Message) -> None:
    """The probe's own events are bound only so their publish is routable."""


def register() -> None:
    """(Re-)register the probe handlers (idempotent)."""
    handles(CONTEXT, commands=("Touch",))(touch)
    handles(CONTEXT, commands=("Slow",))(slow)
    handles(CONTEXT, commands=("Poison",))(poison)
    handles(CONTEXT, commands=("Sever",))(sever)
    handles(CONTEXT, events=("ProbeTouched",))(ignore)


register()
