"""``manage.py seed_demo``: the demo users and catalogue, idempotent, refused in production."""

from io import StringIO

import pytest
from django.conf import settings
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command
from django.test import RequestFactory, override_settings

from eventstore.models import OutboxMessage, StoredEvent
from inventory import public as inventory_public
from orders.models import User

pytestmark = pytest.mark.django_db

needs_catalogue = pytest.mark.skipif(
    not hasattr(inventory_public, "upsert_product") or not hasattr(inventory_public, "catalogue"),
    reason="inventory.public.upsert_product/catalogue not written yet",
)


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def user_rows() -> list[tuple]:
    return list(
        User.objects.order_by("username").values_list(
            "username", "password", "role", "customer_id", "is_staff", "is_superuser", "is_active"
        )
    )


def test_seeds_alice_bob_and_admin():
    seed("--users-only")
    rows = {row[0]: row for row in user_rows()}
    assert set(rows) == {"alice", "bob", "admin"}
    assert rows["alice"][2:] == ("USER", "alice", False, False, True)
    assert rows["bob"][2:] == ("USER", "bob", False, False, True)
    assert rows["admin"][2:] == ("ADMIN", None, True, True, True)
    for username in rows:
        # With django-axes every authentication names the request it comes from.
        login = RequestFactory().post("/admin/login/")
        assert authenticate(login, username=username, password=settings.DEMO_PASSWORD) is not None


def test_second_run_changes_no_user():
    seed("--users-only")
    before = user_rows()
    output = seed("--users-only")
    assert user_rows() == before  # same password hashes too: nothing re-hashed
    assert "users: 0 created, 0 updated, 3 unchanged" in output


def test_a_drifted_user_is_put_back():
    seed("--users-only")
    alice = User.objects.get(username="alice")
    alice.role = "ADMIN"
    alice.set_password("something-else-123")
    alice.save()
    output = seed("--users-only")
    assert "1 updated" in output
    alice.refresh_from_db()
    assert alice.role == "USER"
    assert alice.check_password(settings.DEMO_PASSWORD)


def test_refuses_production_settings_unless_forced():
    with override_settings(SETTINGS_MODULE="config.settings.production"):
        with pytest.raises(CommandError, match="production"):
            seed("--users-only")
        assert not User.objects.exists()
        seed("--users-only", "--force")
    assert User.objects.filter(username="admin").exists()


@needs_catalogue
def test_seeds_twenty_products_and_a_second_run_records_nothing():
    output = seed()
    assert "products: 20 created" in output
    ids = [f"SKU-{n:04d}" for n in range(1, 21)]
    catalogue = inventory_public.catalogue(ids)
    assert sorted(catalogue) == ids
    assert all(item.price > 0 and item.available > 0 and item.name for item in catalogue.values())
    events, outbox, users = StoredEvent.objects.count(), OutboxMessage.objects.count(), user_rows()
    assert events >= 20  # one StockAdjusted (at least) per product

    output = seed()

    assert "products: 0 created, 0 updated, 20 unchanged" in output
    assert (StoredEvent.objects.count(), OutboxMessage.objects.count(), user_rows()) == (
        events,
        outbox,
        users,
    )
    assert inventory_public.catalogue(ids) == catalogue


@needs_catalogue
def test_reseeding_keeps_stock_that_orders_have_moved():
    seed()
    inventory_public.upsert_product(
        product_id="SKU-0001",
        name="Wireless Mouse",
        price=inventory_public.catalogue(["SKU-0001"])["SKU-0001"].price,
        available=3,
    )
    seed()
    assert inventory_public.catalogue(["SKU-0001"])["SKU-0001"].available == 3
