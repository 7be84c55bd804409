"""What a valid access token alone cannot tell: whether it was revoked, and who its user is now.

Every authenticated request (``orders.auth.TokenUser``, built once per request — see
config/authentication.py) makes one cache round trip (``get_many``) for three keys:

- ``auth:revoked:jti:<jti>`` — this access token was presented to ``POST /api/auth/logout``;
- ``auth:revoked:sid:<sid>`` — its login session was logged out (every token pair of one login,
  rotations included, carries the same ``sid`` claim), so the access tokens minted for that
  session die with its refresh token;
- ``auth:user:<username>`` — the user's current active flag, role and customer id, read from
  the database on a miss and kept ``AUTH_USER_STATE_SECONDS`` (default 30). Saving or deleting
  the user forgets it at once (and again when the transaction commits).

A split service other than orders has no user table: on a miss it asks the orders service for
the user's state (``use_state_reader``, connected by the composition root), so a deactivation
or a demotion reaches it as soon as the cached state is forgotten.

A revoked token or an inactive or deleted user is a 401; the role and the customer id a
request acts with are the current ones, not the token's claims, so a demotion takes effect
on the next request. Denials are kept until the token they name has expired. The cache is
Redis in the stack mode (shared by every process); it fails open like the rest of the cache
(an outage forgets denials and reads the user's state from the database on every request).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken
from rest_framework_simplejwt.settings import api_settings as jwt_settings

from .models import User

SESSION_CLAIM = "sid"
DEFAULT_STATE_SECONDS = 30


@dataclass(frozen=True, slots=True)
class CallerState:
    """The user's current role and customer id, as the request acts with them."""

    role: str
    customer_id: str | None


def current_state(token: Any) -> CallerState:
    """The state of the token's user now; raises 401 errors for revoked tokens and gone users."""
    username = str(token.get(jwt_settings.USER_ID_CLAIM))
    state_key = _state_key(username)
    revoked_keys = [_jti_key(str(token.get(jwt_settings.JTI_CLAIM)))]
    session = token.get(SESSION_CLAIM)
    if session:
        revoked_keys.append(_session_key(str(session)))
    found = cache.get_many([state_key, *revoked_keys])
    if any(key in found for key in revoked_keys):
        raise InvalidToken("Token has been revoked by a logout.")
    state = found.get(state_key)
    if state is None:
        state = _state_reader(username)
        cache.set(state_key, state, _state_seconds())
    if not state.get("active"):
        raise AuthenticationFailed("User is inactive or no longer exists.", "user_inactive")
    return CallerState(role=str(state["role"]), customer_id=state.get("customer_id"))


def revoke_access(token: Any) -> None:
    """Deny this access token until it expires."""
    remaining = int(token.get("exp", 0)) - int(time.time())
    if remaining > 0:
        cache.set(_jti_key(str(token[jwt_settings.JTI_CLAIM])), 1, remaining + 1)


def revoke_session(session: str) -> None:
    """Deny every access token of a login session (as long as the longest could still live)."""
    lifetime = int(jwt_settings.ACCESS_TOKEN_LIFETIME.total_seconds())
    cache.set(_session_key(session), 1, lifetime + 1)


def forget_user(username: str) -> None:
    """Drop the cached state of ``username`` now and when the current transaction commits."""
    key = _state_key(username)
    cache.delete(key)
    transaction.on_commit(lambda: cache.delete(key))


@receiver(post_save, sender=User, dispatch_uid="orders.sessions.user_saved")
@receiver(post_delete, sender=User, dispatch_uid="orders.sessions.user_deleted")
def _user_changed(sender: type[User], instance: User, **kwargs: Any) -> None:
    forget_user(instance.get_username())


def load_state(username: str) -> dict[str, Any]:
    """The user's state from the user table (``{"active": False}`` when there is no such user)."""
    row = User.objects.filter(username=username).values_list("is_active", "role", "customer_id").first()
    if row is None:
        return {"active": False}
    is_active, role, customer_id = row
    return {"active": bool(is_active), "role": role, "customer_id": customer_id}


def _state_seconds() -> int:
    return int(getattr(settings, "AUTH_USER_STATE_SECONDS", DEFAULT_STATE_SECONDS))


def _state_key(username: str) -> str:
    return f"auth:user:{username}"


def _jti_key(jti: str) -> str:
    return f"auth:revoked:jti:{jti}"


def _session_key(session: str) -> str:
    return f"auth:revoked:sid:{session}"


_state_reader: Callable[[str], dict[str, Any]] = load_state


def use_state_reader(reader: Callable[[str], dict[str, Any]]) -> None:
    """Read users' states with ``reader`` on a cache miss (a split service without the user table)."""
    global _state_reader  # set once at start-up by the composition root
    _state_reader = reader
