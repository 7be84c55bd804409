"""JWT lifecycle (issue 5 §1): bad tokens are 401 on a real endpoint, rotation and logout revoke.

Every case goes through a real, protected endpoint (GET /api/inventory) or the real auth
endpoints, so what is proven is the configured stack, not simplejwt in isolation.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken
from rest_framework_simplejwt.tokens import AccessToken

from .conftest import assert_problem

pytestmark = pytest.mark.django_db

PROTECTED = "/api/inventory"
# Non-ASCII bytes in a header, as a WSGI server hands them over (decoded as latin-1).
UTF8_AS_WSGI = "é€☃".encode().decode("latin-1")


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def login(username: str) -> dict:
    response = APIClient().post(
        "/api/auth/token", {"username": username, "password": settings.DEMO_PASSWORD}, format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()


def refresh(token: str):
    return APIClient().post("/api/auth/token/refresh", {"refresh": token}, format="json")


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims_of(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def assert_401(response) -> None:
    assert_problem(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_valid_access_token_is_accepted(demo_users):
    # the control case: without it every 401 below could come from a broken endpoint
    assert bearer(login("alice")["access"]).get(PROTECTED).status_code == 200


def test_an_expired_access_token_is_401(demo_users):
    token = AccessToken.for_user(demo_users["alice"])
    token.set_exp(lifetime=-timedelta(seconds=1))
    assert_401(bearer(str(token)).get(PROTECTED))


def test_tokens_live_five_hours_and_seven_days(demo_users):
    pair = login("alice")
    access, refresh_claims = claims_of(pair["access"]), claims_of(pair["refresh"])
    assert access["exp"] - access["iat"] == 5 * 3600
    assert refresh_claims["exp"] - refresh_claims["iat"] == 7 * 24 * 3600


def test_a_tampered_access_token_is_401(demo_users):
    header, _, signature = login("alice")["access"].split(".")
    promoted = {**claims_of(login("alice")["access"]), "role": "ADMIN", "customer_id": None}
    assert_401(bearer(f"{header}.{b64(promoted)}.{signature}").get(PROTECTED))


def test_an_alg_none_token_is_401(demo_users):
    claims = claims_of(login("admin")["access"])
    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."
    assert_401(bearer(unsigned).get(PROTECTED))
    # also with the original HS256 header and the signature stripped
    header = login("admin")["access"].split(".")[0]
    assert_401(bearer(f"{header}.{b64(claims)}.").get(PROTECTED))


def test_a_token_signed_with_another_key_is_401(demo_users):
    claims = claims_of(login("admin")["access"])
    forged = jwt.encode(claims, "not-the-signing-key-but-long-enough-for-hs256", algorithm="HS256")
    assert_401(bearer(forged).get(PROTECTED))


@pytest.mark.parametrize(
    "garbage", ["garbage", "a.b.c", "", "Bearer", "eyJhbGciOiJIUzI1NiJ9..", "x" * 5000, UTF8_AS_WSGI]
)
def test_garbage_tokens_are_401(demo_users, garbage):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {garbage}")
    assert_401(client.get(PROTECTED))


def test_a_refresh_token_is_not_an_access_token(demo_users):
    assert_401(bearer(login("alice")["refresh"]).get(PROTECTED))


def test_the_blacklist_app_is_installed_and_a_blacklisted_refresh_is_refused(demo_users):
    # a missing token_blacklist app silently disables the blacklist: check both ends
    assert "rest_framework_simplejwt.token_blacklist" in settings.INSTALLED_APPS
    pair = login("bob")
    assert refresh(pair["refresh"]).status_code == 200
    jti = claims_of(pair["refresh"])["jti"]
    assert BlacklistedToken.objects.filter(token__jti=jti).exists()
    assert_401(refresh(pair["refresh"]))


def test_a_refresh_token_after_logout_is_401(demo_users):
    pair = login("alice")
    response = APIClient().post("/api/auth/logout", {"refresh": pair["refresh"]}, format="json")
    assert response.status_code == 205
    assert_401(refresh(pair["refresh"]))


def test_a_rotated_refresh_token_reused_is_401(demo_users):
    first = login("alice")
    second = refresh(first["refresh"])
    assert second.status_code == 200
    assert_401(refresh(first["refresh"]))
    # the rotated one is good once, then it is spent too
    third = refresh(second.json()["refresh"])
    assert third.status_code == 200
    assert_401(refresh(second.json()["refresh"]))


def test_a_user_on_an_admin_endpoint_is_403(demo_users):
    body = assert_problem(
        bearer(login("alice")["access"]).put(
            "/api/inventory/SEC-X", {"name": "x", "price": "1.00", "available": 1}, format="json"
        ),
        403,
    )
    assert body["type"] == "urn:oms:problem:permission_denied"


def test_claims_carry_user_role_permissions_and_customer(demo_users):
    alice, admin = claims_of(login("alice")["access"]), claims_of(login("admin")["access"])
    assert (alice["user_id"], alice["role"], alice["customer_id"]) == ("alice", "USER", "alice")
    assert (admin["user_id"], admin["role"], admin["customer_id"]) == ("admin", "ADMIN", None)
    assert "payments:refund" in admin["permissions"] and "payments:refund" not in alice["permissions"]
