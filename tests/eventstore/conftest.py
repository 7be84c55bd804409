"""Fixtures of the transport tests: the throwaway "probe" context, in this process and in workers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from django.db import transaction

from eventstore.models import StoredEvent
from eventstore.publisher import ConfirmingPublisher, Envelope
from eventstore.registry import unregister
from eventstore.store import send
from eventstore.topology import broker_connection
from tests.eventstore import probe_subscriptions
from tests.fixtures.stack import Stack, purge_queues

PROBE_MODULE = "tests.eventstore.probe_subscriptions"

# Importing the module registers the probe (that is how worker subprocesses load it); in this
# process it is registered only while a test asks for it, so other suites never see it.
unregister(probe_subscriptions.CONTEXT)


@pytest.fixture
def probe() -> Iterator[str]:
    """The probe context registered in this process for the duration of a test."""
    probe_subscriptions.register()
    yield probe_subscriptions.CONTEXT
    unregister(probe_subscriptions.CONTEXT)


@pytest.fixture
def probe_stack(probe: str, stack_factory: Stack) -> Stack:
    """A stack whose processes load the probe context (nothing started yet)."""
    purge_queues()  # now including the probe's queues
    stack_factory.env["EXTRA_SUBSCRIPTION_MODULES"] = PROBE_MODULE
    return stack_factory


def send_probe(command: str, **data: object) -> str:
    """Queue a probe command through the outbox (committed); returns its message id."""
    data.setdefault("key", uuid.uuid4().hex)
    with transaction.atomic():
        message = send(
            context=probe_subscriptions.CONTEXT,
            command=command,
            aggregate_type="probe",
            aggregate_id=str(data["key"]),
            data=data,
            correlation_id=str(data["key"]),
        )
    return message.message_id


def effects(key: str) -> int:
    """How many times the probe acted for ``key``."""
    return StoredEvent.objects.filter(aggregate_id=probe_subscriptions.effect_stream(key)).count()


def publish_raw(body: bytes, *, routing_key: str, message_id: str, times: int = 1) -> None:
    """Publish a body straight to ``oms.commands`` (confirmed), ``times`` copies in one batch."""
    publisher = ConfirmingPublisher(broker_connection())
    try:
        envelopes = [
            Envelope(n, exchange="oms.commands", routing_key=routing_key, body=body, message_id=message_id)
            for n in range(times)
        ]
        assert publisher.publish(envelopes) == {}
    finally:
        publisher.close()


def probe_command(command: str, **data: object) -> tuple[str, bytes]:
    """A probe command as it travels: its message id and JSON body."""
    message_id = str(uuid.uuid4())
    body = {
        "message_id": message_id,
        "kind": "command",
        "type": command,
        "aggregate_type": "probe",
        "aggregate_id": str(data.get("key", "")),
        "version": None,
        "position": None,
        "occurred_at": "2025-01-01T00:00:00Z",
        "correlation_id": str(data.get("key", "")),
        "causation_id": "",
        "data": data,
    }
    return message_id, json.dumps(body).encode()
