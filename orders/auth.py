"""JWT wiring: the claims of docs/security.md "Tokens" and the user a request carries.

The caller is built from a validated access token plus one cache read (orders/sessions.py):
a token revoked by a logout, or of a user since deactivated or deleted, is refused (401), and
the role and customer id the request acts with are the user's current ones — no database hit
while the user's state is cached.
"""

from __future__ import annotations

import uuid
from typing import Any

from rest_framework_simplejwt.models import TokenUser as SimpleTokenUser
from rest_framework_simplejwt.tokens import RefreshToken

from . import sessions
from .models import Role, User


class TokenUser(SimpleTokenUser):
    """The caller: a validated access token, checked against revocations and the user's state."""

    def __init__(self, token: Any) -> None:
        super().__init__(token)
        self.current = sessions.current_state(token)

    @property
    def role(self) -> str:
        return self.current.role

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def customer_id(self) -> str | None:
        value = None if self.is_admin else self.current.customer_id
        return None if value is None else str(value)

    @property
    def user_id(self) -> str:
        return str(self.token.get("user_id"))


def claims_for(user: User) -> dict[str, Any]:
    """The custom claims every token of ``user`` carries."""
    is_admin = user.role == Role.ADMIN
    return {
        "role": user.role,
        "permissions": sorted(ADMIN_PERMISSIONS if is_admin else USER_PERMISSIONS),
        "customer_id": None if is_admin else user.customer_id,
    }


def tokens_for(user: User, *, session: str | None = None) -> RefreshToken:
    """A refresh token (and its access token) carrying the claims of ``user``.

    ``session`` is the login session the pair belongs to (``sid``, copied into the access
    tokens): a new one at login, the old one's on rotation, so a logout ends them all.
    """
    refresh = RefreshToken.for_user(user)
    for claim, value in claims_for(user).items():
        refresh[claim] = value
    refresh[sessions.SESSION_CLAIM] = session or uuid.uuid4().hex
    return refresh


USER_PERMISSIONS = frozenset(
    {"orders:create", "orders:read:own", "orders:cancel:own", "payments:read:own", "inventory:read"}
)
ADMIN_PERMISSIONS = USER_PERMISSIONS | frozenset(
    {
        "orders:read:any",
        "orders:cancel:any",
        "orders:status",
        "payments:read:any",
        "payments:process",
        "payments:refund",
        "inventory:write",
        "analytics:read",
        "sagas:intervene",
    }
)
