"""Request rates of the API (docs/security.md "Throttling"): per user, per anonymous client, per login.

Rates come from ``API_THROTTLE_USER`` (default ``1000/min``), ``API_THROTTLE_ANON`` (``60/min``)
and ``API_THROTTLE_LOGIN`` (``10/min``); ``off`` disables one. They are read on every request,
so ``override_settings`` applies at once. The counters live in the default cache — Redis in
stack mode, so every web process shares them. A throttled request is answered 429 with
``Retry-After`` by config.problems.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

DEFAULT_RATES = {"user": "1000/min", "anon": "60/min", "login": "10/min"}
_OFF = ("", "off", "none", "0")


def configured_rate(scope: str) -> str | None:
    """The rate of ``scope`` from settings (``API_THROTTLE_<SCOPE>``); None when switched off."""
    rate = getattr(settings, f"API_THROTTLE_{scope.upper()}", None) or DEFAULT_RATES[scope]
    return None if str(rate).strip().lower() in _OFF else str(rate).strip()


class _SettingsRateThrottle(SimpleRateThrottle):
    """A throttle whose rate is read from settings at each request (not frozen at import)."""

    def __init__(self) -> None:
        # SimpleRateThrottle.__init__ reads the rate once; read it per request instead.
        pass

    def allow_request(self, request: Request, view: Any) -> bool:
        self.rate = configured_rate(str(self.scope))
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)


class UserRateThrottle(_SettingsRateThrottle):
    """Authenticated callers, keyed by their user id from the token (``API_THROTTLE_USER``)."""

    scope = "user"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        user = request.user
        if not (user and user.is_authenticated):
            return None
        return self.cache_format % {"scope": self.scope, "ident": f"user-{user.pk}"}


class AnonRateThrottle(_SettingsRateThrottle):
    """Callers without a token, keyed by client address (``API_THROTTLE_ANON``).

    The address is ``REMOTE_ADDR`` unless ``REST_FRAMEWORK["NUM_PROXIES"]`` says how many
    trusted proxies put their hop in ``X-Forwarded-For`` (the rest of that header is forgeable).
    """

    scope = "anon"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        user = request.user
        if user and user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": f"addr-{self.get_ident(request)}"}


class LoginRateThrottle(_SettingsRateThrottle):
    """Password guessing slowed per account tried (``API_THROTTLE_LOGIN``).

    Keyed by the username, not the address: behind a proxy every client shares one address,
    and spreading guesses over addresses must not multiply the budget of one account.
    """

    scope = "login"

    def get_cache_key(self, request: Request, view: Any) -> str:
        username = request.data.get("username") if isinstance(request.data, dict) else None
        if username:
            digest = hashlib.sha256(str(username).lower().encode("utf-8", "replace")).hexdigest()
            ident = f"user-{digest}"
        else:
            ident = f"addr-{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
