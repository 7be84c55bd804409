"""JWT authentication that checks a request's token once, and a token's signature once.

The logging middleware authenticates early, so that every log line of the request carries the
caller (config/logging.py); the view's authentication then reuses that result instead of
decoding and verifying the same token a second time. A token that failed (or a request the
middleware did not see) is checked by the view as usual, so the 401 is the same.

A client sends the same access token with every request for its whole life, and checking its
signature and claims is pure computation on those bytes: the same bytes always give the same
verdict. So each process keeps the tokens it has verified (:class:`VerifiedTokens`) and takes
one again without decoding it, until its ``exp`` has passed; a token seen only after that, or
never verified, goes through simplejwt as before. What can change while a token lives —
a logout, a deactivated or demoted user — is not a property of the token: it is read on every
request (orders/sessions.py), cached or not.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTStatelessUserScheme
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTStatelessUserAuthentication
from rest_framework_simplejwt.tokens import Token

_CACHE_ATTRIBUTE = "_oms_jwt_authentication"


class VerifiedTokens:
    """The access tokens this process has verified, by their bytes, while they are unexpired.

    Bounded: past ``limit`` tokens it starts again empty (the next request of each client
    verifies its token once more). Only verified tokens go in, so a forged or altered token,
    whose bytes differ, is never found here.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._tokens: dict[bytes, tuple[float, Token]] = {}
        self._lock = threading.Lock()

    def get(self, raw: bytes) -> Token | None:
        """The verified token of these bytes, or None when unknown or expired by now."""
        found = self._tokens.get(raw)
        if found is None:
            return None
        expires, token = found
        if time.time() >= expires:  # simplejwt decides at the edge (its leeway), not this memo
            with self._lock:
                self._tokens.pop(raw, None)
            return None
        return token

    def put(self, raw: bytes, token: Token) -> None:
        expires = token.payload.get("exp")
        if not isinstance(expires, int | float):
            return
        with self._lock:
            if len(self._tokens) >= self._limit:
                self._tokens.clear()
            self._tokens[raw] = (float(expires), token)

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()


verified_tokens = VerifiedTokens()


@receiver(setting_changed, dispatch_uid="config.authentication.verified_tokens")
def _forget_verified_tokens(setting: str, **kwargs: Any) -> None:
    """A new signing key or token setting (tests override them) makes every verdict stale."""
    if setting in ("SIMPLE_JWT", "SECRET_KEY"):
        verified_tokens.clear()


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

    def get_validated_token(self, raw_token: bytes) -> Token:
        """The verified token of ``raw_token``: from :data:`verified_tokens`, or checked by simplejwt."""
        token = verified_tokens.get(raw_token)
        if token is None:
            token = super().get_validated_token(raw_token)
            verified_tokens.put(raw_token, token)
        return token


class RequestJWTScheme(SimpleJWTStatelessUserScheme):
    """The OpenAPI security scheme of :class:`RequestJWTAuthentication` (bearer JWT)."""

    target_class = "config.authentication.RequestJWTAuthentication"
