"""Logout revokes the access token too, and a role change takes effect on the next request.

- ``POST /api/auth/logout`` denies, until they expire, the access token presented with it
  (``Authorization: Bearer``) and every access token of the login session the refresh token
  belongs to (rotations included); another session of the same user goes on.
- Every authenticated request reads the caller's current role and active flag (cached briefly,
  forgotten when the user is saved): a demoted ADMIN's old token gets 403 on ADMIN endpoints,
  a deactivated or deleted user's token 401.
- Both checks cost one cache round trip per request and no SQL once the cache is warm.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.cache import caches
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.api.probe_urls")]

ADMIN_ONLY = "/probe/admin-only"
PROTECTED = "/api/inventory"


def login(username: str) -> dict:
    response = APIClient().post(
        "/api/auth/token", {"username": username, "password": settings.DEMO_PASSWORD}, format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()


def bearer(access: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


def logout(refresh: str, access: str | None = None):
    client = bearer(access) if access else APIClient()
    return client.post("/api/auth/logout", {"refresh": refresh}, format="json")


def assert_401(response) -> None:
    assert response.status_code == 401, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    assert response["WWW-Authenticate"].startswith("Bearer")


# --- logout ------------------------------------------------------------------------------------


def test_after_logout_the_same_access_token_is_401(demo_users):
    pair = login("alice")
    assert bearer(pair["access"]).get(PROTECTED).status_code == 200
    assert logout(pair["refresh"], pair["access"]).status_code == 205
    assert_401(bearer(pair["access"]).get(PROTECTED))


def test_logout_with_the_refresh_token_alone_ends_the_sessions_access_tokens(demo_users):
    pair = login("admin")
    assert logout(pair["refresh"]).status_code == 205
    assert_401(bearer(pair["access"]).get(ADMIN_ONLY))


def test_logout_ends_the_whole_session_across_rotations_and_nothing_else(demo_users):
    first = login("bob")
    rotated = APIClient().post("/api/auth/token/refresh", {"refresh": first["refresh"]}, format="json").json()
    other_session = login("bob")
    assert logout(rotated["refresh"]).status_code == 205
    assert_401(bearer(first["access"]).get(PROTECTED))
    assert_401(bearer(rotated["access"]).get(PROTECTED))
    # bob's other login is another session: it goes on
    assert bearer(other_session["access"]).get(PROTECTED).status_code == 200


def test_the_denial_lives_in_the_cache_until_the_token_expires(demo_users):
    from django_redis import get_redis_connection

    pair = login("alice")
    logout(pair["refresh"], pair["access"])
    token = AccessToken(pair["access"], verify=False)
    redis = get_redis_connection("default")
    keys = redis.keys(f"*revoked*{token['jti']}*")
    assert len(keys) == 1, keys
    assert 0 < redis.ttl(keys[0]) <= token["exp"] - token["iat"] + 60


def test_a_bad_bearer_on_logout_changes_nothing_but_the_refresh(demo_users):
    pair = login("alice")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    assert client.post("/api/auth/logout", {"refresh": pair["refresh"]}, format="json").status_code == 205


# --- the caller's current state --------------------------------------------------------------


def test_a_demoted_admins_old_token_is_403_on_admin_endpoints(demo_users):
    access = login("admin")["access"]
    assert bearer(access).get(ADMIN_ONLY).status_code == 200
    admin = demo_users["admin"]
    admin.role = "USER"
    admin.save(update_fields=["role"])
    response = bearer(access).get(ADMIN_ONLY)
    assert response.status_code == 403, response.content
    # and a promotion takes effect as well
    admin.role = "ADMIN"
    admin.save(update_fields=["role"])
    assert bearer(access).get(ADMIN_ONLY).status_code == 200


def test_a_deactivated_users_token_is_401_and_works_again_once_reactivated(demo_users):
    access = login("bob")["access"]
    assert bearer(access).get(PROTECTED).status_code == 200
    bob = demo_users["bob"]
    bob.is_active = False
    bob.save(update_fields=["is_active"])
    assert_401(bearer(access).get(PROTECTED))
    bob.is_active = True
    bob.save(update_fields=["is_active"])
    assert bearer(access).get(PROTECTED).status_code == 200


def test_a_deleted_users_token_is_401(demo_users):
    access = login("bob")["access"]
    assert bearer(access).get(PROTECTED).status_code == 200
    demo_users["bob"].delete()
    assert_401(bearer(access).get(PROTECTED))


def test_a_changed_customer_id_is_the_one_the_request_acts_for(demo_users):
    access = login("alice")["access"]
    alice = demo_users["alice"]
    alice.customer_id = "alice-2"
    alice.save(update_fields=["customer_id"])
    # alice's order list is now the one of customer alice-2: asking for "alice" is another's
    assert bearer(access).get("/api/orders/customer/alice").status_code == 404
    assert bearer(access).get("/api/orders/customer/alice-2").status_code == 200


# --- cost --------------------------------------------------------------------------------------


@override_settings(API_THROTTLE_USER="off")  # the throttle's own counter is another read
def test_a_request_checks_revocation_and_state_with_one_cache_read_and_no_sql(demo_users, monkeypatch):
    client = bearer(login("admin")["access"])
    assert client.get(ADMIN_ONLY).status_code == 200  # warms the user's state

    reads: list[str] = []
    backend = type(caches["default"])
    for name in ("get", "get_many"):
        original = getattr(backend, name)

        def counting(self, *args, _original=original, _name=name, **kwargs):
            reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(backend, name, counting)
    with CaptureQueriesContext(connection) as queries:
        assert client.get(ADMIN_ONLY).status_code == 200
    assert reads == ["get_many"], reads
    assert queries.captured_queries == []
