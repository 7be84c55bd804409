"""Fixtures of the transport tests: the throwaway "probe" context, in this process and in workers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from django.db import transaction

from eventstore.models import StoredEvent
from eventstore.registry import unregister
from eventstore.store import send
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
