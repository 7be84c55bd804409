"""The Django admin: product changes go through upsert_product; reservations are read only."""

from __future__ import annotations

import pytest
from django.test import Client

from eventstore.store import load_stream
from inventory.models import Product

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client() -> Client:
    from orders.models import User

    user = User.objects.create_superuser("inv-admin", "inv@example.com", "pw-123456789")
    client = Client()
    client.force_login(user)
    return client


def test_product_added_in_the_admin_records_stock_adjusted(staff_client) -> None:
    response = staff_client.post(
        "/admin/inventory/product/add/",
        {"product_id": "ADM-1", "name": "From admin", "price": "4.20", "available": "6"},
    )
    assert response.status_code == 302
    row = Product.objects.get(product_id="ADM-1")
    assert (row.available, row.received, row.version) == (6, 6, 1)
    (event,) = load_stream("product-ADM-1")
    assert event.type == "StockAdjusted" and event.data["delta"] == 6


def test_lists_render_and_reservations_cannot_be_added(staff_client, make_product) -> None:
    make_product("ADM-2", available=1)
    assert staff_client.get("/admin/inventory/product/").status_code == 200
    assert staff_client.get("/admin/inventory/reservation/").status_code == 200
    assert staff_client.get("/admin/inventory/reservation/add/").status_code == 403


def test_admin_form_rejects_bad_ids_and_negative_stock(staff_client) -> None:
    for body in (
        {"product_id": "bad id", "name": "x", "price": "1.00", "available": "1"},
        {"product_id": "OK-1", "name": "x", "price": "1.00", "available": "-1"},
        {"product_id": "OK-2", "name": "x", "price": "-1.00", "available": "1"},
    ):
        response = staff_client.post("/admin/inventory/product/add/", body)
        assert response.status_code == 200  # the form again, with its errors
    assert not Product.objects.exists()
