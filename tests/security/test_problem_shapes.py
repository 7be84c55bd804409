"""Every error class answers an RFC 9457 problem document (issue 5 §4), on the real routes."""

from __future__ import annotations

import uuid

import pytest
from django.test import override_settings

from .conftest import assert_problem

pytestmark = pytest.mark.django_db

ORDER = {
    "items": [{"product_id": "SEC-0001", "quantity": 1}],
    "payment": {"method": "card", "token": "tok_ok"},
}


def test_400_401_403_404_405_415(alice_client, api_client):
    body = assert_problem(alice_client.post("/api/orders", {"items": []}, format="json"), 400)
    assert body["errors"] and all({"pointer", "detail"} == set(e) for e in body["errors"])
    assert_problem(api_client.get("/api/inventory"), 401)
    assert_problem(
        alice_client.post("/api/inventory/confirm", {"order_id": str(uuid.uuid4())}, format="json"), 403
    )
    assert_problem(alice_client.get(f"/api/orders/{uuid.uuid4()}"), 404)
    assert_problem(alice_client.get("/api/nowhere"), 404)
    assert_problem(alice_client.patch("/api/orders", {}, format="json"), 405)
    assert_problem(
        alice_client.post("/api/orders", "a=1", content_type="application/x-www-form-urlencoded"), 415
    )


def test_409_and_422(alice_client, admin_client, stocked):
    stocked()
    key = {"HTTP_IDEMPOTENCY_KEY": "k-1"}
    assert alice_client.post("/api/orders", ORDER, format="json", **key).status_code == 202
    other = {**ORDER, "items": [{"product_id": "SEC-0001", "quantity": 2}]}
    assert_problem(alice_client.post("/api/orders", other, format="json", **key), 422)
    order_id = alice_client.post("/api/orders", ORDER, format="json").json()["order_id"]
    response = admin_client.put(f"/api/orders/{order_id}/status", {"status": "COMPLETED"}, format="json")
    assert_problem(response, 409)


@override_settings(API_MAX_BODY_BYTES=100, API_THROTTLE_USER="1/min")
def test_413_and_429(alice_client):
    assert_problem(alice_client.post("/api/orders", {"x": "y" * 200}, format="json"), 413)
    alice_client.get("/api/inventory")
    assert_problem(alice_client.get("/api/inventory"), 429)


def test_500_has_no_details():
    # crashes inside views are covered in tests/api/test_problems.py; this is the handler500 shape
    from django.test import RequestFactory

    from config.problems import server_error

    assert_problem(server_error(RequestFactory().get("/")), 500)
