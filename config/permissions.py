"""Role checks shared by every context's API (docs/security.md "Roles": USER and ADMIN)."""

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request


class IsAdmin(BasePermission):
    """Only an ADMIN token passes (a USER gets 403 after authentication)."""

    message = "This operation needs the ADMIN role."

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(getattr(request.user, "is_admin", False))


def is_admin(request: Request) -> bool:
    """Whether the caller holds the ADMIN role."""
    return bool(getattr(request.user, "is_admin", False))


def customer_of(request: Request) -> str | None:
    """The caller's customer id (None for an ADMIN)."""
    return getattr(request.user, "customer_id", None)
