"""Every error is an RFC 9457 problem document: DRF errors, Django-level errors, crashes."""

import json

import pytest
from rest_framework.test import APIClient

from config.problems import PROBLEM_CONTENT_TYPE, validation_errors

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.api.probe_urls")]


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith(PROBLEM_CONTENT_TYPE)
    body = json.loads(response.content)
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert body["status"] == status
    assert body["type"].startswith("urn:oms:problem:")
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert "Traceback" not in response.content.decode()
    return body


def test_missing_token_is_401_with_a_bearer_challenge(api_client):
    response = api_client.get("/probe/admin-only")
    body = assert_problem(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert body["type"] == "urn:oms:problem:not_authenticated"


def test_garbage_token_is_401(api_client):
    api_client.credentials(HTTP_AUTHORIZATION="Bearer not-a-jwt")
    response = api_client.get("/probe/admin-only")
    body = assert_problem(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")
    # simplejwt's inner messages name token classes; only the summary goes out.
    assert "messages" not in body
    assert "AccessToken" not in response.content.decode()


def test_user_role_on_admin_operation_is_403(alice_client, admin_client):
    body = assert_problem(alice_client.get("/probe/admin-only"), 403)
    assert body["type"] == "urn:oms:problem:permission_denied"
    assert admin_client.get("/probe/admin-only").status_code == 200


def test_unknown_path_is_a_django_404_problem(api_client):
    body = assert_problem(api_client.get("/api/no/such/thing"), 404)
    assert body["type"] == "urn:oms:problem:not_found"
    assert "tried" not in json.dumps(body)


@pytest.mark.parametrize("method", ["get", "post", "put", "delete"])
def test_unknown_api_path_is_a_404_problem_also_with_debug_on(api_client, settings, method):
    # issue 13: with DEBUG on, Django would answer its HTML page of the URL patterns it tried
    settings.DEBUG = True
    for path in ("/api/no/such/thing", "/api/orders/not-a-uuid/status", "/api/inventory/SKU-1/"):
        body = assert_problem(getattr(api_client, method)(path), 404)
        assert body["type"] == "urn:oms:problem:not_found"
        assert "tried" not in json.dumps(body)


def test_an_accept_header_without_json_is_a_406_problem(alice_client):
    # declared on every API operation (config/openapi.py)
    for path in ("/api/orders", "/api/inventory"):
        body = assert_problem(alice_client.get(path, HTTP_ACCEPT="text/html"), 406)
        assert body["type"] == "urn:oms:problem:not_acceptable"


def test_unknown_path_outside_the_api_is_a_problem_too(api_client):
    assert_problem(api_client.get("/nothing-here.html"), 404)


def test_wrong_method_is_405_with_allow(api_client):
    response = api_client.get("/api/auth/token")
    body = assert_problem(response, 405)
    assert body["type"] == "urn:oms:problem:method_not_allowed"
    assert "POST" in response["Allow"]


def test_field_errors_carry_json_pointers_into_the_body(alice_client):
    response = alice_client.post(
        "/probe/validate",
        {"items": [{"product_id": "a", "quantity": 0}, {"quantity": 5}]},
        format="json",
    )
    body = assert_problem(response, 400)
    assert body["type"] == "urn:oms:problem:invalid"
    pointers = {error["pointer"] for error in body["errors"]}
    assert pointers == {"/items/0/quantity", "/items/1/product_id"}
    assert all(error["detail"] for error in body["errors"])


def test_object_level_error_points_at_the_whole_document(alice_client):
    response = alice_client.post("/probe/validate", {"items": [], "note": "reject"}, format="json")
    body = assert_problem(response, 400)
    assert body["errors"] == [{"pointer": "", "detail": "The note says reject."}]
    assert body["detail"] == "The note says reject."


def test_malformed_json_is_400(alice_client):
    response = alice_client.post("/probe/validate", data="{not json", content_type="application/json")
    body = assert_problem(response, 400)
    assert body["type"] == "urn:oms:problem:parse_error"


def test_unsupported_media_type_is_415(alice_client):
    response = alice_client.post(
        "/probe/validate", data="a=1", content_type="application/x-www-form-urlencoded"
    )
    assert_problem(response, 415)


def test_conflict_carries_retry_after_and_extra_members(alice_client):
    response = alice_client.post("/probe/conflict", {}, format="json")
    body = assert_problem(response, 409)
    assert response["Retry-After"] == "3"
    assert body["order_id"] == "o-1"
    assert body["detail"] == "Still running."


def test_problem_response_helper(alice_client):
    response = alice_client.get("/probe/problem")
    body = assert_problem(response, 409)
    assert body["title"] == "Busy"
    assert body["hint"] == "wait"
    assert response["Retry-After"] == "2"


def test_crash_in_an_api_view_is_a_bare_500_problem(token_for):
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for('alice')}")
    response = client.get("/probe/broken")
    body = assert_problem(response, 500)
    assert "SELECT" not in response.content.decode()
    assert "RuntimeError" not in response.content.decode()
    assert body["type"] == "urn:oms:problem:server_error"


def test_crash_in_a_django_view_is_a_bare_500_problem():
    client = APIClient(raise_request_exception=False)
    response = client.get("/probe/django-broken")
    assert_problem(response, 500)
    assert "SELECT" not in response.content.decode()


def test_permission_denied_in_a_django_view_is_a_403_problem(api_client):
    response = api_client.get("/probe/django-forbidden")
    assert_problem(response, 403)
    assert "internal reason" not in response.content.decode()


def test_disallowed_host_is_a_400_problem(api_client):
    response = api_client.get("/health/live", HTTP_HOST="evil.example")
    body = assert_problem(response, 400)
    assert "evil.example" not in json.dumps(body)


def test_http404_in_an_api_view_does_not_name_the_model(alice_client):
    response = alice_client.get("/probe/missing")
    body = assert_problem(response, 404)
    assert "Order" not in body["detail"]


def test_a_stale_stream_version_is_a_409(alice_client):
    body = assert_problem(alice_client.post("/probe/stale", {}, format="json"), 409)
    assert body["type"] == "urn:oms:problem:concurrent_update"
    assert "order-1" not in body["detail"]


def test_a_django_validation_error_is_a_400_with_pointers(alice_client):
    body = assert_problem(alice_client.post("/probe/model-validation", {}, format="json"), 400)
    assert body["errors"] == [{"pointer": "/price", "detail": "Ensure this value is at least 0."}]


def test_problem_response_renders_from_a_plain_django_view(api_client):
    body = assert_problem(api_client.get("/probe/django-problem"), 503)
    assert body["retry_after_seconds"] == 30
    assert body["title"] == "Service unavailable"


def test_pointer_escapes_slash_and_tilde():
    errors = validation_errors({"a/b": {"c~d": ["bad"]}, "non_field_errors": ["whole"]})
    assert errors == [{"pointer": "/a~1b/c~0d", "detail": "bad"}, {"pointer": "", "detail": "whole"}]


def test_list_field_child_errors_keyed_by_index():
    # DRF's ListField reports child errors as {index: [messages]}.
    assert validation_errors({"tags": {2: ["too long"]}}) == [{"pointer": "/tags/2", "detail": "too long"}]
