"""JWT authentication that checks a request's token once.

The logging middleware authenticates early, so that every log line of the request carries the
caller (config/logging.py); the view's authentication then reuses that result instead of
decoding and verifying the same token a second time. A token that failed (or a request the
middleware did not see) is checked by the view as usual, so the 401 is the same.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTStatelessUserScheme
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTStatelessUserAuthentication

_CACHE_ATTRIBUTE = "_oms_jwt_authentication"


class RequestJWTAuthentication(JWTStatelessUserAuthentication):
    """simplejwt's stateless authentication, memoised on the Django request."""

    def authenticate(self, request: Request) -> Any:
        """The (user, token) pair of this request's bearer token, or ``None`` without one."""
        http_request = getattr(request, "_request", request)
        found = getattr(http_request, _CACHE_ATTRIBUTE, None)
        if found is None:
            found = super().authenticate(request)
            if found is not None:
                setattr(http_request, _CACHE_ATTRIBUTE, found)
        return found


class RequestJWTScheme(SimpleJWTStatelessUserScheme):
    """The OpenAPI security scheme of :class:`RequestJWTAuthentication` (bearer JWT)."""

    target_class = "config.authentication.RequestJWTAuthentication"
