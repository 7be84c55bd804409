"""Input limits (issue 5 §5): lines, quantities, body size, strict JSON, no NUL reaching PostgreSQL.

Each violation is a 400 or 413 problem document that says what is wrong, and changes nothing.
"""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from eventstore.models import StoredEvent

from .conftest import PRODUCT, assert_problem

pytestmark = pytest.mark.django_db


def order_body(lines: int = 1, quantity: int = 1) -> dict:
    return {
        "items": [{"product_id": f"LIM-{i:03d}", "quantity": quantity} for i in range(lines)],
        "payment": {"method": "card", "token": "tok_ok"},
    }


@pytest.fixture
def catalogue(stocked) -> None:
    for i in range(101):
        stocked(product_id=f"LIM-{i:03d}", available=5000)


def post_raw(client, raw: bytes | str, path: str = "/api/orders"):
    return client.generic("POST", path, raw, content_type="application/json")


def test_one_and_a_hundred_lines_are_accepted(alice_client, catalogue):
    assert alice_client.post("/api/orders", order_body(1), format="json").status_code == 202
    assert alice_client.post("/api/orders", order_body(100), format="json").status_code == 202


@pytest.mark.parametrize("lines", [0, 101])
def test_zero_or_more_than_a_hundred_lines_are_400(alice_client, catalogue, lines):
    before = StoredEvent.objects.count()
    body = assert_problem(alice_client.post("/api/orders", order_body(lines), format="json"), 400)
    assert body["errors"][0]["pointer"] == "/items"
    assert StoredEvent.objects.count() == before


def test_quantity_one_and_a_thousand_are_accepted(alice_client, catalogue):
    assert alice_client.post("/api/orders", order_body(1, 1), format="json").status_code == 202
    assert alice_client.post("/api/orders", order_body(1, 1000), format="json").status_code == 202


@pytest.mark.parametrize("quantity", [0, -1, 1001, 10**12, 1.5, "3", True, None])
def test_a_quantity_outside_1_to_1000_or_not_an_integer_is_400(alice_client, catalogue, quantity):
    body = assert_problem(alice_client.post("/api/orders", order_body(1, quantity), format="json"), 400)
    assert body["errors"][0]["pointer"] == "/items/0/quantity"


def test_payment_is_required(alice_client, catalogue):
    body = assert_problem(
        alice_client.post("/api/orders", {"items": order_body()["items"]}, format="json"), 400
    )
    assert body["errors"][0]["pointer"] == "/payment"


@override_settings(API_MAX_BODY_BYTES=2048)
def test_a_body_over_the_limit_is_413_before_it_is_read(alice_client, catalogue):
    raw = json.dumps({**order_body(), "padding": "x" * 4096})
    body = assert_problem(post_raw(alice_client, raw), 413)
    assert "2048" in body["detail"]
    # a body at the limit still passes the size check
    assert post_raw(alice_client, json.dumps(order_body())).status_code == 202


def test_the_default_limit_is_413_too(alice_client, settings):
    raw = b'{"padding": "' + b"x" * settings.API_MAX_BODY_BYTES + b'"}'
    assert_problem(post_raw(alice_client, raw), 413)
    # also on the auth endpoints, which take no token
    assert_problem(post_raw(alice_client, raw, "/api/auth/token"), 413)


def test_a_malformed_content_length_is_400(alice_client):
    response = alice_client.generic(
        "POST", "/api/orders", b"{}", content_type="application/json", CONTENT_LENGTH="12abc"
    )
    assert_problem(response, 400)


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ('{"items": [{"product_id": "SEC-0001", "quantity": NaN}]}', "NaN"),
        ('{"items": [{"product_id": "SEC-0001", "quantity": Infinity}]}', "Infinity"),
        ('{"items": [{"product_id": "SEC-0001", "quantity": -Infinity}]}', "Infinity"),
        ('{"items": [{"product_id": "SEC-0001", "quantity": 1e999}]}', "too large"),
        ('{"items": [{"product_id": "SEC-0001", "quantity": ' + "9" * 5000 + "}]}", "too large"),
        ('{"items": [], "items": [{"product_id": "SEC-0001", "quantity": 1}]}', "twice"),
        ("[" * 100_000 + "]" * 100_000, "nested"),
        ("{not json", "not valid JSON"),
        (b"\xff\xfe{}", "UTF-8"),
    ],
)
def test_non_strict_json_is_a_400_that_says_why(alice_client, raw, says):
    body = assert_problem(post_raw(alice_client, raw), 400)
    assert body["type"] == "urn:oms:problem:parse_error"
    assert says in body["detail"]


@pytest.mark.parametrize(
    ("raw", "pointer"),
    [
        ('{"items": [{"product_id": "SEC\\u00000001", "quantity": 1}]}', "/items/0/product_id"),
        ('{"payment": {"method": "card", "token": "tok\\u0000ok"}}', "/payment/token"),
        ('{"items": [{"product_id\\u0000": "x"}]}', "/items/0/product_id\x00"),
        ('{"customer_id": "\\ud800"}', "/customer_id"),
    ],
)
def test_nul_and_lone_surrogates_never_reach_the_database(alice_client, admin_client, raw, pointer):
    before = StoredEvent.objects.count()
    for client in (alice_client, admin_client):
        body = assert_problem(post_raw(client, raw), 400)
        assert body["errors"][0]["pointer"] == pointer
    assert StoredEvent.objects.count() == before


def test_nul_in_the_query_is_400_and_in_the_path_404(alice_client):
    assert_problem(alice_client.get("/api/orders?status=PEN%00DING"), 400)
    assert_problem(alice_client.get("/api/orders/search?q=a%00b"), 400)
    # in the path no resource can match: the same 404 as an unknown id
    assert_problem(alice_client.get("/api/inventory/SKU%00"), 404)
    assert_problem(alice_client.get("/api/orders/customer/ali%00ce"), 404)


def test_nul_in_a_product_put_by_an_admin_is_400(admin_client):
    raw = '{"name": "Bad\\u0000Name", "price": "1.00", "available": 1}'
    response = admin_client.generic("PUT", f"/api/inventory/{PRODUCT}", raw, content_type="application/json")
    assert assert_problem(response, 400)["errors"][0]["pointer"] == "/name"
