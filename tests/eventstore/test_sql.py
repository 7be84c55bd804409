"""Rows sent as one JSON parameter (eventstore/sql.py) reach their columns as the ORM would write them."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DataError, models, transaction
from django.test.utils import isolate_apps

from eventstore.models import OutboxMessage
from eventstore.sql import bound_cursor, dialect, insert_rows, unnest, update_statement
from inventory.models import Product

pytestmark = pytest.mark.django_db

COLUMNS = (
    "message_id",
    "exchange",
    "routing_key",
    "body",
    "headers",
    "created_at",
    "claimed_until",
    "attempts",
    "last_error",
)


def _postgres_only() -> None:
    if not dialect().arrays:
        pytest.skip("the portable dialect spells every value out")


def test_each_type_arrives_as_the_orm_writes_it() -> None:
    _postgres_only()
    message_id = uuid.uuid4()
    created = datetime(2026, 11, 30, 23, 59, 58, 123456, tzinfo=UTC)
    body = {
        "name": 'Zoë ☃ "quoted" \\ back',
        "lines": [{"qty": 2, "price": "12.50"}],
        "ok": True,
        "none": None,
    }
    rows = [
        (message_id, "oms.events", "orders.OrderCreated", body, {"1": "a"}, created, None, 3, ""),
        (uuid.uuid4(), "oms.events", "x", [1, 2.5, "three"], {}, created, created, 0, "e"),
        (uuid.uuid4(), "oms.events", "y", "just a string", {}, created, None, 0, ""),
    ]
    insert_rows(OutboxMessage, COLUMNS, rows)

    first = OutboxMessage.objects.get(message_id=message_id)
    assert (first.exchange, first.routing_key, first.body, first.headers) == (
        "oms.events",
        "orders.OrderCreated",
        body,
        {"1": "a"},
    )
    assert first.created_at == created  # to the microsecond, with its zone
    assert first.claimed_until is None and first.attempts == 3
    assert OutboxMessage.objects.get(routing_key="x").body == [1, 2.5, "three"]
    assert OutboxMessage.objects.get(routing_key="x").claimed_until == created
    assert OutboxMessage.objects.get(routing_key="y").body == "just a string"


def test_an_overlong_value_is_refused_as_by_the_orm() -> None:
    _postgres_only()
    row = (uuid.uuid4(), "x" * 65, "k", {}, {}, datetime.now(UTC), None, 0, "")  # exchange is varchar(64)
    with pytest.raises(DataError), transaction.atomic():
        insert_rows(OutboxMessage, COLUMNS, [row])
    assert not OutboxMessage.objects.exists()


def test_an_update_sets_decimals_exactly_and_only_on_matched_rows() -> None:
    _postgres_only()
    for product_id in ("SQL-1", "SQL-2", "SQL-3"):
        Product.objects.create(
            product_id=product_id, name=product_id, price=Decimal("1.00"), available=5, received=5
        )
    sql, params = update_statement(
        Product,
        ("product_id", "price", "available", "sold"),
        ("product_id",),
        [("SQL-1", Decimal("12.35"), 4, 1), ("SQL-3", Decimal("0.10"), 0, 5)],
    )
    with bound_cursor() as cursor:
        cursor.execute(sql, params)
        assert cursor.rowcount == 2
    found = {
        p.product_id: (p.price, p.available, p.sold)
        for p in Product.objects.filter(product_id__startswith="SQL-")
    }
    assert found == {
        "SQL-1": (Decimal("12.35"), 4, 1),
        "SQL-2": (Decimal("1.00"), 5, 0),
        "SQL-3": (Decimal("0.10"), 0, 5),
    }


@isolate_apps("eventstore")
def test_a_json_field_with_its_own_encoder_is_encoded_by_it() -> None:
    _postgres_only()

    class Encoded(models.Model):  # no table: only the encoding of its rows is read
        payload = models.JSONField(encoder=DjangoJSONEncoder)

        class Meta:
            app_label = "eventstore"

        def __str__(self) -> str:
            return str(self.payload)

    at = datetime(2026, 11, 30, 23, 59, 58, 123456, tzinfo=UTC)
    rows = unnest(Encoded, ("payload",), [({"at": at, "amount": Decimal("12.50")},), (None,)])
    with bound_cursor() as cursor:
        cursor.execute(f"SELECT {rows.values['payload']} FROM {rows.sql}", rows.params)
        found = [None if row[0] is None else json.loads(row[0]) for row in cursor.fetchall()]
    # DjangoJSONEncoder's own text: milliseconds, "Z", decimals as strings
    assert found == [{"at": "2026-11-30T23:59:58.123Z", "amount": "12.50"}, None]
