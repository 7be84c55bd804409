"""Throttling (issue 5 §6): per user, per address, per login account, on Redis; 429 with Retry-After."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import override_settings
from django_redis import get_redis_connection
from rest_framework.test import APIClient

from config.throttling import DEFAULT_RATES, configured_rate

from .conftest import assert_problem

pytestmark = pytest.mark.django_db


def assert_429(response) -> None:
    body = assert_problem(response, 429)
    assert body["type"] == "urn:oms:problem:throttled"
    assert 1 <= int(response["Retry-After"]) <= 60


def test_design_defaults():
    assert DEFAULT_RATES == {"user": "1000/min", "anon": "60/min", "login": "10/min"}


@override_settings(API_THROTTLE_USER="3/min")
def test_a_user_over_the_rate_gets_429_and_others_do_not(alice_client, bob_client):
    for _ in range(3):
        assert alice_client.get("/api/inventory").status_code == 200
    assert_429(alice_client.get("/api/inventory"))
    # the budget is per user: bob still passes
    assert bob_client.get("/api/inventory").status_code == 200


@override_settings(API_THROTTLE_USER="2/min")
def test_user_counters_live_in_redis(alice_client):
    alice_client.get("/api/inventory")
    keys = get_redis_connection("default").keys("*throttle_user_user-alice*")
    assert keys, "the throttle counter is not in Redis"


@override_settings(API_THROTTLE_ANON="2/min")
def test_anonymous_clients_are_throttled_per_address(demo_users):
    client = APIClient()
    for _ in range(2):
        assert client.post("/api/auth/token/refresh", {"refresh": "x"}, format="json").status_code == 401
    assert_429(client.post("/api/auth/token/refresh", {"refresh": "x"}, format="json"))
    other = APIClient(REMOTE_ADDR="10.9.8.7")
    assert other.post("/api/auth/token/refresh", {"refresh": "x"}, format="json").status_code == 401


@override_settings(API_THROTTLE_ANON="2/min")
def test_a_forged_forwarded_for_does_not_reset_the_anonymous_budget(demo_users):
    for n in range(2):
        APIClient().post(
            "/api/auth/token/refresh", {"refresh": "x"}, format="json", HTTP_X_FORWARDED_FOR=f"1.1.1.{n}"
        )
    response = APIClient().post(
        "/api/auth/token/refresh", {"refresh": "x"}, format="json", HTTP_X_FORWARDED_FOR="2.2.2.2"
    )
    assert_429(response)


@override_settings(API_THROTTLE_LOGIN="2/min")
def test_login_attempts_are_throttled_per_account(demo_users):
    def login(username: str, password: str = settings.DEMO_PASSWORD):
        return APIClient().post(
            "/api/auth/token", {"username": username, "password": password}, format="json"
        )

    assert login("alice", "wrong-password").status_code == 401
    assert login("alice").status_code == 200
    assert_429(login("alice"))
    assert login("bob").status_code == 200


@override_settings(API_THROTTLE_USER="1/min", API_THROTTLE_ANON="1/min")
def test_health_probes_are_never_throttled(demo_users):
    # Probes come without a token, from one address: the anonymous budget is what they would
    # exhaust. The control shows that budget is really down to one request a minute here.
    control = APIClient()
    assert control.post("/api/auth/token/refresh", {"refresh": "x"}, format="json").status_code == 401
    assert_429(control.post("/api/auth/token/refresh", {"refresh": "x"}, format="json"))
    probe = APIClient()
    for _ in range(3):
        assert probe.get("/health/live").status_code == 200
        assert probe.get("/health/ready").status_code != 429


@override_settings(API_THROTTLE_USER="off", API_THROTTLE_ANON="OFF")
def test_off_disables_a_rate():
    assert configured_rate("user") is None and configured_rate("anon") is None
