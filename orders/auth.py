"""JWT wiring: the claims of DESIGN §6 and the user a request carries (no database hit)."""

from __future__ import annotations

from typing import Any

from rest_framework_simplejwt.models import TokenUser as SimpleTokenUser
from rest_framework_simplejwt.tokens import RefreshToken

from .models import Role, User


class TokenUser(SimpleTokenUser):
    """The caller, read from a validated access token's claims."""

    @property
    def role(self) -> str:
        return str(self.token.get("role", Role.USER))

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def customer_id(self) -> str | None:
        value = self.token.get("customer_id")
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


def tokens_for(user: User) -> RefreshToken:
    """A refresh token (and its access token) carrying the claims of ``user``."""
    refresh = RefreshToken.for_user(user)
    for claim, value in claims_for(user).items():
        refresh[claim] = value
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
