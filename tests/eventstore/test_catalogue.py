"""The event catalogue: every event typed, registered once, its schema guarded by the snapshot,
and older versions upcast wherever stored events are read (streams, position readers, rebuilds)."""

from __future__ import annotations

import dataclasses
import importlib
import io
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction

from eventstore import catalogue
from eventstore.catalogue import Event, register
from eventstore.management.commands.event_schemas import SNAPSHOT, read_snapshot
from eventstore.messages import Message
from eventstore.models import StoredEvent
from eventstore.store import append, load_stream, load_streams
from orders.events import OrderCreated

Use = Callable[[type[Event]], None]
CONTEXTS_WITH_EVENTS = ("eventstore", "orders", "sagas", "inventory", "payments")


def _event_classes() -> list[type[Event]]:
    """Every Event class defined in a context's events.py."""
    found = []
    for context in CONTEXTS_WITH_EVENTS:
        module = importlib.import_module(f"{context}.events")
        found += [
            value
            for value in vars(module).values()
            if isinstance(value, type) and issubclass(value, Event) and value.__module__ == module.__name__
        ]
    return found


def test_every_event_class_is_registered_under_its_stored_name() -> None:
    classes = _event_classes()
    assert len(classes) == len(catalogue.registered()) == 26
    for cls in classes:
        assert catalogue.event_class(cls.event_type) is cls
        assert cls.schema_version == 1  # no event has changed since the catalogue was written
        params = getattr(cls, "__dataclass_params__")  # noqa: B009
        assert params.frozen, cls


def test_the_registered_schemas_match_the_snapshot() -> None:
    assert catalogue.schema_problems(read_snapshot()) == []
    call_command("event_schemas", stdout=io.StringIO())  # the command agrees


def test_stored_data_is_exactly_the_fields_and_nothing_is_copied() -> None:
    items = [{"product_id": "SKU-1", "product_name": "W", "quantity": 1, "price": "2.00"}]
    event = OrderCreated(
        order_id="o-1", customer_id="c-1", items=items, total_amount="2.00", payment={"method": "card"}
    )
    data = catalogue.to_data(event)
    assert list(data) == ["order_id", "customer_id", "items", "total_amount", "payment"]
    assert data["items"] is items  # one dictionary per event, no deep copy on the hot path
    assert catalogue.from_data("OrderCreated", 1, data) == event


def test_an_optional_member_is_left_out_of_the_stored_data_when_none() -> None:
    from payments.events import PaymentAttempted

    attempted = PaymentAttempted(order_id="o-1", payment_id="p-1", attempt=1, outcome="timeout", error="slow")
    assert "may_land_until" not in catalogue.to_data(attempted)  # as payments wrote it before
    later = dataclasses.replace(attempted, may_land_until="2026-01-01T00:00:05+00:00")
    assert catalogue.to_data(later)["may_land_until"] == "2026-01-01T00:00:05+00:00"
    assert catalogue.from_data("PaymentAttempted", 1, catalogue.to_data(attempted)) == attempted


@dataclass(frozen=True, slots=True, kw_only=True)
class _RenamedOrderCreated(Event):
    """OrderCreated with ``customer_id`` renamed, its version left at 1 (what the guard catches)."""

    event_type: ClassVar[str] = "OrderCreated"
    order_id: str
    customer: str
    items: list[dict[str, str]]
    total_amount: str
    payment: dict[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderCreatedV2(OrderCreated):
    """A second version of OrderCreated (this test's only): a ``channel`` member added."""

    schema_version: ClassVar[int] = 2
    channel: str


def _to_v2(data: dict) -> dict:
    """The upcaster: orders placed before v2 came through the web shop."""
    return {**data, "channel": "web"}


@pytest.fixture
def registered_instead() -> Iterator[Use]:
    """Register a class in place of the catalogue's own for one test, then restore it."""
    replaced: dict[str, type[Event]] = {}

    def use(cls: type[Event]) -> None:
        replaced.setdefault(cls.event_type, catalogue.event_class(cls.event_type))
        catalogue.unregister(cls.event_type)
        register(cls)

    yield use
    for name, original in replaced.items():
        catalogue.unregister(name)
        register(original)
        catalogue.unregister_upcaster(name, 1)
    assert catalogue.schema_problems(read_snapshot()) == []


def test_a_field_renamed_without_a_new_version_fails_the_guard(registered_instead: Use) -> None:
    registered_instead(_RenamedOrderCreated)
    problems = catalogue.schema_problems(read_snapshot())
    assert problems == [
        "OrderCreated v1 differs from its snapshot (-customer_id, +customer, items: "
        "list[{product_id: str, product_name: str, quantity: int, price: str}] -> list[dict[str, str]], "
        "payment: {method: str} -> dict[str, str]): "
        "a change of fields needs a new schema_version and an upcaster from the old one"
    ]
    with pytest.raises(CommandError, match="OrderCreated v1 differs"):
        call_command("event_schemas", stdout=io.StringIO())
    with pytest.raises(ValueError, match="bump its schema_version"):
        catalogue.merged_snapshot(read_snapshot())  # --write never rewrites a version


def test_a_new_version_needs_its_snapshot_and_an_upcaster(registered_instead: Use) -> None:
    registered_instead(OrderCreatedV2)
    assert catalogue.schema_problems(read_snapshot()) == [
        "OrderCreated v2 is not in the snapshot: a new event or version "
        "(manage.py event_schemas --write adds it)",
        "OrderCreated has no upcaster from v1 to v2",
    ]
    catalogue.register_upcaster("OrderCreated", 1, _to_v2)
    merged = catalogue.merged_snapshot(read_snapshot())
    assert merged["OrderCreated"]["1"] == read_snapshot()["OrderCreated"]["1"]  # the old version is kept
    assert merged["OrderCreated"]["2"]["channel"] == "str"
    assert catalogue.schema_problems(merged) == []


def test_the_snapshot_file_is_written_sorted_and_stable() -> None:
    text = SNAPSHOT.read_text()
    assert json.dumps(catalogue.merged_snapshot(json.loads(text)), indent=2) + "\n" == text


def _order_created_v1(order_id: str) -> None:
    data = {
        "order_id": order_id,
        "customer_id": "upcast-customer",
        "items": [{"product_id": "SKU-1", "product_name": "Widget", "quantity": 2, "price": "5.00"}],
        "total_amount": "10.00",
        "payment": {"method": "card"},
    }
    with transaction.atomic():
        append(
            context="orders",
            aggregate_type="order",
            aggregate_id=order_id,
            expected_version=0,
            events=[catalogue.from_data("OrderCreated", 1, data)],
            correlation_id=order_id,
        )


@pytest.mark.django_db(transaction=True)
def test_a_v1_event_is_read_back_as_v2_through_the_store_and_the_rebuild(
    registered_instead: Use, monkeypatch: pytest.MonkeyPatch
) -> None:
    from queries import projections
    from queries.models import OrderReadModel
    from queries.projections import active_generation

    # given an OrderCreated stored in version 1
    order_id = str(uuid.uuid4())
    _order_created_v1(order_id)
    assert StoredEvent.objects.get(aggregate_id=order_id).schema_version == 1
    # when version 2 is registered with its upcaster
    registered_instead(OrderCreatedV2)
    catalogue.register_upcaster("OrderCreated", 1, _to_v2)
    # then the stream reads it as version 2
    [message] = load_stream(order_id)
    assert (message.schema_version, message.data["channel"]) == (2, "web")
    assert load_streams([order_id])[order_id] == [message]
    assert catalogue.from_data(message.type, message.schema_version, message.data) == OrderCreatedV2(
        **message.data
    )
    # and so does rebuild_projections, which replays it through the position reader
    seen: list[Message] = []
    live = projections.PROJECTIONS["orders"]

    def watched(writes: object, generation: int, event: Message) -> None:
        seen.append(event)
        live.apply(writes, generation, event)  # type: ignore[arg-type]

    monkeypatch.setitem(projections.PROJECTIONS, "orders", dataclasses.replace(live, apply=watched))
    call_command("rebuild_projections", "--projection", "orders", stdout=io.StringIO(), stderr=io.StringIO())
    [replayed] = [m for m in seen if m.aggregate_id == order_id]
    assert (replayed.schema_version, replayed.data["channel"]) == (2, "web")
    row = OrderReadModel.objects.get(generation=active_generation("orders"), order_id=order_id)
    assert (row.customer_id, str(row.total_amount)) == ("upcast-customer", "10.00")


def test_a_message_published_in_an_older_version_is_upcast_when_received(registered_instead: Use) -> None:
    registered_instead(OrderCreatedV2)
    catalogue.register_upcaster("OrderCreated", 1, _to_v2)
    body = {
        "message_id": str(uuid.uuid4()),
        "kind": "event",
        "type": "OrderCreated",
        "aggregate_type": "order",
        "aggregate_id": "o-1",
        "version": 1,
        "occurred_at": "2026-01-01T00:00:00Z",
        "data": {"order_id": "o-1"},
    }  # no schema_version: version 1, as every message before the catalogue
    message = Message.from_body(body)
    assert (message.schema_version, message.data) == (2, {"order_id": "o-1", "channel": "web"})
    assert message.to_body()["schema_version"] == 2
    assert Message.from_body(message.to_body()) == message
