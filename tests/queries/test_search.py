"""GET /api/orders/search: full text over product names, order id and customer id."""

from __future__ import annotations

import pytest
from django.db import connection

from .conftest import created, day, deliver

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalogue_orders() -> dict[str, str]:
    made = {
        "lamp": created("alice", [("P-1", "Brass Desk Lamp", 1, "10.00")], at=day(1)),
        "lamps": created(
            "alice", [("P-1", "Brass Desk Lamp", 1, "10.00"), ("P-9", "Lamp Shade", 1, "4.00")], at=day(2)
        ),
        "rug": created("alice", [("P-3", "Wool Rug", 1, "5.50")], at=day(3)),
        "bob_lamp": created("bob", [("P-1", "Brass Desk Lamp", 2, "10.00")], at=day(4)),
    }
    deliver(*made.values())
    return {key: message.aggregate_id for key, message in made.items()}


def _ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [item["order_id"] for item in response.json()["results"]]


def test_search_finds_an_order_by_a_word_of_a_product_name(admin_client, catalogue_orders) -> None:
    assert _ids(admin_client.get("/api/orders/search?q=rug")) == [catalogue_orders["rug"]]
    found = _ids(admin_client.get("/api/orders/search?q=lamp"))
    assert set(found) == {catalogue_orders["lamp"], catalogue_orders["lamps"], catalogue_orders["bob_lamp"]}
    # ranked: the order whose names say "lamp" twice comes first
    assert found[0] == catalogue_orders["lamps"]
    assert _ids(admin_client.get("/api/orders/search?q=brass lamp shade")) == [catalogue_orders["lamps"]]


def test_search_by_order_id_and_customer_id(admin_client, catalogue_orders) -> None:
    assert _ids(admin_client.get(f"/api/orders/search?q={catalogue_orders['rug']}")) == [
        catalogue_orders["rug"]
    ]
    assert _ids(admin_client.get("/api/orders/search?q=bob")) == [catalogue_orders["bob_lamp"]]


def test_search_uses_the_gin_index_on_postgresql(catalogue_orders) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'order_read_model_search_gin'")
        assert "gin (search_vector)" in cursor.fetchone()[0]


def test_a_user_searches_only_their_own_orders(alice_client, bob_client, catalogue_orders) -> None:
    assert catalogue_orders["bob_lamp"] not in _ids(alice_client.get("/api/orders/search?q=lamp"))
    assert _ids(bob_client.get("/api/orders/search?q=lamp")) == [catalogue_orders["bob_lamp"]]
    assert _ids(alice_client.get(f"/api/orders/search?q={catalogue_orders['bob_lamp']}")) == []
    assert _ids(alice_client.get("/api/orders/search?q=bob")) == []


@pytest.mark.parametrize("query", ["", "?q=", "?q=%20%20", "?q=a%00b", "?q=lamp&status=NOPE"])
def test_bad_search_is_400(alice_client, catalogue_orders, query) -> None:
    response = alice_client.get(f"/api/orders/search{query}")
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"


def test_odd_search_text_is_not_an_error(admin_client, catalogue_orders) -> None:
    for q in ["'", "lamp & | !", "-lamp", '"unclosed', "::*", "(("]:
        assert admin_client.get("/api/orders/search", {"q": q}).status_code == 200, q
