"""Backup and recovery: a pg_dump restored into a new database, read models rebuilt there from its events.

``backup_database`` writes the dump, ``restore_database --rebuild-projections`` restores it
into a database of its own and runs ``rebuild_projections`` against it; the rebuilt read
models must equal the ones of the original database, field by field.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connections, models

from eventstore.bus import drain
from eventstore.models import StoredEvent
from queries.models import OrderItemReadModel, OrderReadModel, PaymentReadModel, ProjectionState

pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "restored"]),
    pytest.mark.usefixtures("restored_alias"),
    pytest.mark.slow,
]


def _fields(model: type[models.Model], *skipped: str) -> list[str]:
    return [f.attname for f in model._meta.concrete_fields if not f.primary_key and f.name not in skipped]


def generations(using: str) -> dict[str, int]:
    return dict(ProjectionState.objects.using(using).values_list("name", "generation"))


def read_models(using: str) -> dict[str, Any]:
    """The active read models of one database: every field but row ids and generations."""
    active = generations(using)
    order_fields = _fields(OrderReadModel, "generation", "order_id")
    item_fields = _fields(OrderItemReadModel, "order")
    payment_fields = _fields(PaymentReadModel, "generation", "order_id")
    orders = OrderReadModel.objects.using(using).filter(generation=active["orders"]).prefetch_related("items")
    payments = PaymentReadModel.objects.using(using).filter(generation=active["payments"])
    return {
        "orders": {
            str(o.order_id): {
                **{name: getattr(o, name) for name in order_fields},
                "items": sorted(tuple(getattr(i, name) for name in item_fields) for i in o.items.all()),
            }
            for o in orders
        },
        "payments": {str(p.order_id): {name: getattr(p, name) for name in payment_fields} for p in payments},
    }


def events(using: str) -> list[tuple[Any, ...]]:
    return list(
        StoredEvent.objects.using(using)
        .order_by("id")
        .values_list("message_id", "aggregate_id", "event_type", "event_data", "version", "timestamp")
    )


def url_of(database: dict[str, Any], name: str) -> str:
    auth = database.get("USER") or ""
    if database.get("PASSWORD"):
        auth += f":{database['PASSWORD']}"
    return f"postgres://{auth}@{database.get('HOST') or '127.0.0.1'}:{database.get('PORT') or 5432}/{name}"


@pytest.fixture(scope="module")
def restored_alias() -> Iterator[None]:
    """The alias ``restored``: the test database's name with ``_restored``, on the same server.

    Module-scoped so that it exists before a test's database set-up checks its ``databases``;
    the database itself is made and dropped by each test (:func:`restored_database`).
    """
    primary = connections["default"].settings_dict
    config = {**primary, "NAME": f"{primary['NAME']}_restored", "TEST": {"MIRROR": "default"}}
    configured = connections.configure_settings({"default": primary, "restored": config})
    connections.settings["restored"] = configured["restored"]
    try:
        yield
    finally:
        with contextlib.suppress(AttributeError):
            del connections["restored"]
        del connections.settings["restored"]


@contextlib.contextmanager
def restored_database() -> Iterator[str]:
    """The URL of the ``restored`` alias's database, dropped before and after."""
    restored = connections["restored"].settings_dict

    def drop() -> None:
        connections["restored"].close()
        with psycopg.connect(url_of(restored, "postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{restored["NAME"]}" WITH (FORCE)')

    drop()
    try:
        yield url_of(restored, restored["NAME"])
    finally:
        drop()


def test_a_restored_backup_rebuilds_read_models_equal_to_the_originals(
    place_and_run, alice_client, tmp_path: Path, settings
) -> None:
    settings.PAYMENT_RETRY_BACKOFF = 0.01
    place_and_run("alice", [("SKU-W", 2), ("SKU-G", 1)])  # completed
    place_and_run("bob", [("SKU-G", 3)], token="tok_declined")  # failed, payment failed
    place_and_run("alice", [("SKU-S", 1)])  # completed, the last sprocket
    place_and_run("bob", [("SKU-S", 1)])  # out of stock
    cancelled = place_and_run("alice", [("SKU-W", 1)])
    assert alice_client.delete(f"/api/orders/{cancelled}").status_code == 202
    drain()
    originals = read_models("default")
    assert len(originals["orders"]) == 5 and len(originals["payments"]) >= 3
    assert {o["status"] for o in originals["orders"].values()} == {"COMPLETED", "FAILED", "CANCELLED"}

    dump = tmp_path / "oms.dump"
    call_command("backup_database", output=dump)
    assert dump.stat().st_size > 0

    with restored_database() as url:
        call_command("restore_database", str(dump), target_url=url, rebuild_projections=True)
        # The restored event store is the original one, and the read models were rebuilt from
        # it into a new generation (the restored ones were replaced), equal to the originals.
        assert events("restored") == events("default")
        before = generations("default")
        assert generations("restored") == {key: value + 1 for key, value in before.items()}
        assert read_models("restored") == originals

        with pytest.raises(CommandError, match="not empty"):
            call_command("restore_database", str(dump), target_url=url)


def test_a_restore_never_goes_over_the_live_database(tmp_path: Path) -> None:
    dump = tmp_path / "oms.dump"
    call_command("backup_database", output=dump)
    live = url_of(connections["default"].settings_dict, connections["default"].settings_dict["NAME"])
    with pytest.raises(CommandError, match="database this platform uses"):
        call_command("restore_database", str(dump), target_url=live)


def test_restoring_a_missing_file_is_refused(tmp_path: Path) -> None:
    with restored_database() as url, pytest.raises(CommandError, match="no backup at"):
        call_command("restore_database", str(tmp_path / "missing.dump"), target_url=url)
