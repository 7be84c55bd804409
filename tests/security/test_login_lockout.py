"""Repeated failed logins lock the account and the address (django-axes), admin and API alike.

``LOGIN_FAILURE_LIMIT`` failures (default 5) lock the account — from any address — and the
address — for any account — for ``LOGIN_LOCKOUT_MINUTES``. The failure that reaches the limit
and every attempt during the lock, right password included, are answered 429 with
Retry-After: a problem document on the API and on the admin's login page alike. Attempts are
counted in the database; each test's transaction takes them away again.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from .conftest import assert_problem

pytestmark = pytest.mark.django_db

ADMIN_LOGIN = "/admin/login/"
ATTACKER = "203.0.113.7"
ELSEWHERE = "198.51.100.9"


def admin_login(username: str, password: str, address: str = ATTACKER) -> tuple[Client, object]:
    client = Client(REMOTE_ADDR=address)
    response = client.post(ADMIN_LOGIN, {"username": username, "password": password, "next": "/admin/"})
    return client, response


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def api_login(username: str, password: str, address: str = ATTACKER):
    return APIClient(REMOTE_ADDR=address).post(
        "/api/auth/token", {"username": username, "password": password}, format="json"
    )


def assert_locked(response) -> dict:
    body = assert_problem(response, 429)
    assert body["type"] == "urn:oms:problem:login_locked"
    assert "locked" in body["detail"] and "minutes" in body["detail"]
    assert int(response["Retry-After"]) == settings.LOGIN_LOCKOUT_MINUTES * 60
    return body


def test_the_defaults():
    assert settings.LOGIN_FAILURE_LIMIT == 5
    assert settings.AXES_FAILURE_LIMIT == settings.LOGIN_FAILURE_LIMIT
    cool_off = settings.AXES_COOLOFF_TIME
    assert cool_off == timedelta(minutes=settings.LOGIN_LOCKOUT_MINUTES)
    assert settings.AXES_LOCKOUT_PARAMETERS == ["username", "ip_address"]


def test_the_admin_login_locks_after_repeated_failures_even_for_the_right_password(demo_users):
    for _ in range(settings.LOGIN_FAILURE_LIMIT - 1):
        client, response = admin_login("admin", "wrong-password")
        assert response.status_code == 200 and not logged_in(client)  # the form, with its error
    client, response = admin_login("admin", "wrong-password")
    assert_locked(response)

    client, response = admin_login("admin", settings.DEMO_PASSWORD)
    assert_locked(response)
    assert not logged_in(client)


def test_the_lock_holds_the_account_from_any_address_and_the_address_for_any_account(demo_users):
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        admin_login("admin", "wrong-password")
    # the account, from another address (admin page and API)
    client, response = admin_login("admin", settings.DEMO_PASSWORD, address=ELSEWHERE)
    assert_locked(response)
    assert not logged_in(client)
    assert_locked(api_login("admin", settings.DEMO_PASSWORD, address=ELSEWHERE))
    # the address, for another account
    assert_locked(api_login("alice", settings.DEMO_PASSWORD))
    # neither the other account from the other address
    assert api_login("alice", settings.DEMO_PASSWORD, address=ELSEWHERE).status_code == 200


def test_the_api_token_endpoint_answers_401_then_429_and_shares_the_count(demo_users):
    for _ in range(settings.LOGIN_FAILURE_LIMIT - 2):
        assert_problem(api_login("bob", "wrong-password"), 401)
    # failures on the admin page count for the same account
    admin_login("bob", "wrong-password")
    assert_locked(api_login("bob", "wrong-password"))
    assert_locked(api_login("bob", settings.DEMO_PASSWORD))


def test_unknown_accounts_lock_the_same_way(demo_users):
    # no difference between an account that exists and one that does not
    for _ in range(settings.LOGIN_FAILURE_LIMIT - 1):
        assert_problem(api_login("mallory", "whatever-123", address=ELSEWHERE), 401)
    assert_locked(api_login("mallory", "whatever-123", address=ELSEWHERE))


def test_after_the_cool_off_the_right_password_works_again(demo_users):
    from axes.models import AccessAttempt

    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        admin_login("admin", "wrong-password")
    assert_locked(api_login("admin", settings.DEMO_PASSWORD))
    # the cool-off passes
    AccessAttempt.objects.update(
        attempt_time=timezone.now() - timedelta(minutes=settings.LOGIN_LOCKOUT_MINUTES, seconds=1)
    )
    client, response = admin_login("admin", settings.DEMO_PASSWORD)
    assert response.status_code == 302 and logged_in(client)
    assert api_login("admin", settings.DEMO_PASSWORD).status_code == 200


def test_successful_logins_and_other_tests_are_not_held_back(demo_users):
    # the failures of the tests above were rolled back with their transactions
    for username in ("alice", "bob", "admin"):
        assert api_login(username, settings.DEMO_PASSWORD).status_code == 200
    client, response = admin_login("admin", settings.DEMO_PASSWORD)
    assert response.status_code == 302 and logged_in(client)
