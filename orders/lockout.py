"""Lockout after repeated failed logins (django-axes), for the admin and POST /api/auth/token.

``LOGIN_FAILURE_LIMIT`` failures (default 5), each within ``LOGIN_LOCKOUT_MINUTES`` (default 15)
of the next, lock the account — from every address — and the address — for every account —
for that many minutes (config/settings/base.py, ``AXES_*``); attempts during the lock are not
counted, so they do not prolong it.
Attempts are counted in the database (``axes.AccessAttempt``), so every web process sees the
same count in both run modes and a cache outage does not lift a lock; an operator unlocks
with ``manage.py axes_reset_username <name>`` / ``axes_reset_ip <address>`` or by deleting the
attempt in the admin.

The failure that reaches the limit and every attempt during the lock, right password
included, are answered **429** with ``Retry-After`` and the problem type
``urn:oms:problem:login_locked``: by the token view on the API, by :func:`lockout_response`
(axes' middleware) on the admin's login page.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from rest_framework import status
from rest_framework.throttling import BaseThrottle

from config.problems import PROBLEM_CONTENT_TYPE, Problem, problem_body

CODE = "login_locked"


def lockout_seconds() -> int:
    """How long a lock lasts (the configured cool-off), the ``Retry-After`` of a locked login."""
    return int(settings.LOGIN_LOCKOUT_MINUTES) * 60


def lockout_detail() -> str:
    return (
        "Too many failed login attempts for this account or from this address: logging in is "
        f"locked for {settings.LOGIN_LOCKOUT_MINUTES} minutes."
    )


class LoginLocked(Problem):
    """429 from POST /api/auth/token while the account or the address is locked."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_detail = "Logging in is locked for a while; see Retry-After."
    default_code = CODE


def locked_out(request: Any) -> LoginLocked:
    """The API's answer to a login refused by the lock."""
    return LoginLocked(lockout_detail(), CODE, retry_after=lockout_seconds())


def lockout_response(
    request: HttpRequest, original_response: Any = None, credentials: Any = None
) -> JsonResponse:
    """``AXES_LOCKOUT_CALLABLE``: the admin's login page while locked — the same 429 problem."""
    body = problem_body(status=429, code=CODE, title="Login locked", detail=lockout_detail())
    response = JsonResponse(body, status=429, content_type=PROBLEM_CONTENT_TYPE)
    response["Retry-After"] = str(lockout_seconds())
    return response


def client_address(request: Any) -> str | None:
    """``AXES_CLIENT_IP_CALLABLE``: the address the API's throttles key anonymous clients by.

    ``REMOTE_ADDR``, unless ``REST_FRAMEWORK["NUM_PROXIES"]`` trusted proxies put their hop in
    ``X-Forwarded-For`` (config/throttling.py); anything that is not an IP address is not used.
    """
    for candidate in (BaseThrottle().get_ident(request), request.META.get("REMOTE_ADDR")):
        try:
            return str(ipaddress.ip_address(str(candidate).strip()))
        except ValueError:
            continue
    return None
