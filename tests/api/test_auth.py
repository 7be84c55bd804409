"""Auth endpoints (docs/security.md "Tokens"): obtain, rotate with blacklist, logout, and bad tokens."""

import base64
import json
import threading

import pytest
from django.conf import settings
from django.test import override_settings
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from orders.auth import ADMIN_PERMISSIONS, USER_PERMISSIONS

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.api.probe_urls")]

PROBLEM = "application/problem+json"


def obtain(client, username: str, password: str | None = None):
    return client.post(
        "/api/auth/token",
        {"username": username, "password": password or settings.DEMO_PASSWORD},
        format="json",
    )


def pair_for(client, username: str) -> dict:
    response = obtain(client, username)
    assert response.status_code == 200, response.content
    return response.json()


def refresh(client, token: str):
    return client.post("/api/auth/token/refresh", {"refresh": token}, format="json")


def assert_401_problem(response) -> dict:
    assert response.status_code == 401, response.content
    assert response["Content-Type"].startswith(PROBLEM)
    assert response["WWW-Authenticate"].startswith("Bearer")
    body = response.json()
    assert body["status"] == 401 and body["type"].startswith("urn:oms:problem:")
    return body


@pytest.mark.parametrize(
    ("username", "role", "customer_id", "permissions"),
    [
        ("alice", "USER", "alice", USER_PERMISSIONS),
        ("bob", "USER", "bob", USER_PERMISSIONS),
        ("admin", "ADMIN", None, ADMIN_PERMISSIONS),
    ],
)
def test_token_carries_the_claims_of_each_demo_user(
    api_client, demo_users, username, role, customer_id, permissions
):
    pair = pair_for(api_client, username)
    assert set(pair) == {"access", "refresh"}
    for token in (AccessToken(pair["access"]), RefreshToken(pair["refresh"])):
        assert token["user_id"] == username
        assert token["role"] == role
        assert token["customer_id"] == customer_id
        assert set(token["permissions"]) == permissions


def test_obtained_access_token_authenticates(api_client, demo_users):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair_for(api_client, 'admin')['access']}")
    assert api_client.get("/probe/admin-only").status_code == 200


def test_wrong_password_is_401_problem(api_client, demo_users):
    body = assert_401_problem(obtain(api_client, "alice", "wrong-password"))
    assert "credentials" in body["detail"]


def test_unknown_user_is_401_problem(api_client, demo_users):
    assert_401_problem(obtain(api_client, "mallory", "whatever-123"))


def test_inactive_user_cannot_log_in(api_client, demo_users):
    demo_users["bob"].is_active = False
    demo_users["bob"].save(update_fields=["is_active"])
    assert_401_problem(obtain(api_client, "bob"))


def test_missing_fields_are_400_with_pointers(api_client, demo_users):
    response = api_client.post("/api/auth/token", {}, format="json")
    assert response.status_code == 400
    assert response["Content-Type"].startswith(PROBLEM)
    assert {error["pointer"] for error in response.json()["errors"]} == {"/username", "/password"}


def test_nul_and_oversized_input_are_400_not_500(api_client, demo_users):
    response = api_client.post("/api/auth/token", {"username": "al\u0000ice", "password": "x"}, format="json")
    assert response.status_code == 400
    response = api_client.post(
        "/api/auth/token", {"username": "alice", "password": "p" * 5000}, format="json"
    )
    assert response.status_code == 400
    response = api_client.post("/api/auth/token/refresh", {"refresh": "\u0000"}, format="json")
    assert response.status_code == 400


def test_refresh_rotates_and_the_old_refresh_is_refused(api_client, demo_users):
    first = pair_for(api_client, "alice")
    response = refresh(api_client, first["refresh"])
    assert response.status_code == 200, response.content
    second = response.json()
    assert set(second) == {"access", "refresh"}
    assert second["refresh"] != first["refresh"]
    access = AccessToken(second["access"])
    assert (access["user_id"], access["role"], access["customer_id"]) == ("alice", "USER", "alice")
    assert set(access["permissions"]) == USER_PERMISSIONS
    # given the first refresh was used, when it is replayed, then it is refused
    assert_401_problem(refresh(api_client, first["refresh"]))
    # and the rotated one still works
    assert refresh(api_client, second["refresh"]).status_code == 200


def test_refresh_carries_the_current_role(api_client, demo_users):
    pair = pair_for(api_client, "bob")
    demo_users["bob"].role = "ADMIN"
    demo_users["bob"].save(update_fields=["role"])
    access = AccessToken(refresh(api_client, pair["refresh"]).json()["access"])
    assert access["role"] == "ADMIN"
    assert access["customer_id"] is None


def test_refresh_of_a_deactivated_user_is_401(api_client, demo_users):
    pair = pair_for(api_client, "bob")
    demo_users["bob"].is_active = False
    demo_users["bob"].save(update_fields=["is_active"])
    assert_401_problem(refresh(api_client, pair["refresh"]))


def test_refresh_of_a_deleted_user_is_401(api_client, demo_users):
    pair = pair_for(api_client, "bob")
    demo_users["bob"].delete()
    assert_401_problem(refresh(api_client, pair["refresh"]))


def test_logout_is_205_then_the_refresh_no_longer_works(api_client, demo_users):
    pair = pair_for(api_client, "bob")
    response = api_client.post("/api/auth/logout", {"refresh": pair["refresh"]}, format="json")
    assert response.status_code == 205
    assert response.content == b""
    assert_401_problem(refresh(api_client, pair["refresh"]))
    assert_401_problem(api_client.post("/api/auth/logout", {"refresh": pair["refresh"]}, format="json"))


def test_access_token_is_not_a_refresh_token(api_client, demo_users):
    pair = pair_for(api_client, "alice")
    assert_401_problem(refresh(api_client, pair["access"]))
    assert_401_problem(api_client.post("/api/auth/logout", {"refresh": pair["access"]}, format="json"))


def _with_claims(token: str, **claims: object) -> str:
    """The same token with some claims changed and the original signature kept."""
    header, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(claims)
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def test_garbage_and_tampered_tokens_are_401(api_client, demo_users):
    pair = pair_for(api_client, "alice")
    header, payload, signature = pair["access"].split(".")
    promoted = _with_claims(pair["access"], role="ADMIN", customer_id=None)
    for bad in ("garbage", promoted, f"{header}.{payload}.", f"{header}.{payload}.{signature[::-1]}"):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {bad}")
        assert_401_problem(client.get("/probe/admin-only"))
    assert_401_problem(refresh(api_client, _with_claims(pair["refresh"], user_id="admin")))
    assert_401_problem(refresh(api_client, "garbage"))
    # the untampered refresh token was never spent by those attempts
    assert refresh(api_client, pair["refresh"]).status_code == 200


def test_a_token_signed_with_another_key_is_401(api_client, demo_users):
    import jwt

    forged = jwt.encode(
        {"token_type": "access", "user_id": "admin", "role": "ADMIN", "exp": 4102444800, "jti": "x"},
        "another-key-that-is-long-enough-for-hs256",
        algorithm="HS256",
    )
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {forged}")
    assert_401_problem(api_client.get("/probe/admin-only"))


def test_login_is_throttled_with_retry_after(api_client, demo_users):
    with override_settings(API_THROTTLE_LOGIN="2/min"):
        assert obtain(api_client, "alice").status_code == 200
        assert obtain(api_client, "alice", "wrong-password").status_code == 401
        response = obtain(api_client, "alice")
        # another account is not held back by alice's attempts
        assert obtain(api_client, "bob").status_code == 200
    assert response.status_code == 429
    assert response["Content-Type"].startswith(PROBLEM)
    assert int(response["Retry-After"]) >= 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_refreshes_of_one_token_let_exactly_one_win(demo_users):
    pair = pair_for(APIClient(), "alice")
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def use_it() -> None:
        from django.db import connection

        try:
            barrier.wait()
            statuses.append(refresh(APIClient(), pair["refresh"]).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=use_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 401, 401, 401]


@pytest.mark.django_db(transaction=True)
def test_client_fixtures_work_in_transactional_tests(alice_client, admin_client):
    assert alice_client.get("/probe/admin-only").status_code == 403
    assert admin_client.get("/probe/admin-only").status_code == 200


@pytest.mark.urls("config.urls")
def test_a_request_verifies_its_token_once_and_a_bad_token_is_still_refused(alice_client, monkeypatch):
    from config.authentication import RequestJWTAuthentication

    verified = []
    original = RequestJWTAuthentication.get_validated_token

    def counting(self, raw_token):
        verified.append(raw_token)
        return original(self, raw_token)

    monkeypatch.setattr(RequestJWTAuthentication, "get_validated_token", counting)

    # the logging middleware and the view both need the caller: one verification serves both
    response = alice_client.get("/api/payments/does-not-exist")
    assert response.status_code == 404
    assert len(verified) == 1

    # a token that fails is checked again by the view, which answers the usual 401
    verified.clear()
    response = APIClient(HTTP_AUTHORIZATION="Bearer not-a-token").get("/api/payments/does-not-exist")
    assert response.status_code == 401
    assert response["Content-Type"].startswith(PROBLEM)
    assert len(verified) == 2
