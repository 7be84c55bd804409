"""A verified access token is not verified again (config/authentication.py), and nothing else changes.

Each case goes through a real protected endpoint; the signature checks are counted at
simplejwt's token backend, where every decode passes.
"""

from __future__ import annotations

import pytest
from django.test import override_settings
from rest_framework.test import APIClient
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.tokens import AccessToken

from config import authentication
from orders import sessions

from .conftest import assert_problem

pytestmark = pytest.mark.django_db

PROTECTED = "/api/inventory"


@pytest.fixture(autouse=True)
def empty_memo():
    authentication.verified_tokens.clear()
    yield
    authentication.verified_tokens.clear()


@pytest.fixture
def decodes(monkeypatch) -> list[str]:
    """The tokens simplejwt decoded (and so verified) during the test."""
    seen: list[str] = []
    decode = TokenBackend.decode

    def counting(self, token, verify=True):
        seen.append(token.decode() if isinstance(token, bytes) else str(token))
        return decode(self, token, verify)

    monkeypatch.setattr(TokenBackend, "decode", counting)
    return seen


def get(token: str):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.get(PROTECTED)


def test_a_token_is_verified_once_for_many_requests(demo_users, decodes):
    token = str(AccessToken.for_user(demo_users["alice"]))
    for _ in range(3):
        assert get(token).status_code == 200
    assert decodes == [token]


def test_a_remembered_token_past_its_expiry_is_401(demo_users, decodes, monkeypatch):
    token = AccessToken.for_user(demo_users["alice"])
    assert get(str(token)).status_code == 200
    later = float(token["exp"]) + 1
    monkeypatch.setattr(authentication.time, "time", lambda: later)
    # simplejwt decides again, on its own clock: the token has expired there too
    monkeypatch.setattr(AccessToken, "check_exp", _expired)
    assert_problem(get(str(token)), 401)
    assert decodes[0] == str(token) and set(decodes[1:]) == {str(token)}  # simplejwt asked again
    assert authentication.verified_tokens.get(str(token).encode()) is None


def _expired(self, claim="exp", current_time=None):
    from rest_framework_simplejwt.exceptions import TokenError

    raise TokenError("Token is expired")


def test_a_token_altered_after_its_original_was_verified_is_401(demo_users):
    token = str(AccessToken.for_user(demo_users["alice"]))
    assert get(token).status_code == 200
    header, payload, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    assert_problem(get(f"{header}.{payload}.{flipped}"), 401)


def test_a_logout_still_refuses_a_remembered_token(demo_users):
    token = AccessToken.for_user(demo_users["alice"])
    assert get(str(token)).status_code == 200
    sessions.revoke_access(token)
    assert_problem(get(str(token)), 401)


def test_new_token_settings_forget_every_verdict(demo_users, decodes):
    token = str(AccessToken.for_user(demo_users["alice"]))
    assert get(token).status_code == 200
    assert authentication.verified_tokens.get(token.encode()) is not None
    with override_settings(SIMPLE_JWT={"SIGNING_KEY": "another-key-long-enough-for-hs256-signatures!"}):
        assert authentication.verified_tokens.get(token.encode()) is None
    assert get(token).status_code == 200
    assert decodes == [token, token]


def test_the_memo_stays_bounded():
    memo = authentication.VerifiedTokens(limit=3)
    tokens = [AccessToken() for _ in range(4)]
    for index, token in enumerate(tokens):
        memo.put(f"t{index}".encode(), token)
    assert memo.get(b"t3") is tokens[3]
    assert [memo.get(f"t{index}".encode()) for index in range(3)] == [None, None, None]
