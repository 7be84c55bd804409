"""Request guards that run before any view: body size and NUL characters in the URL.

Django's own body limit (``DATA_UPLOAD_MAX_MEMORY_SIZE``) only trips when a view reads the
body, and then answers a plain 400; DRF reads the stream without that limit at all. Checking
``Content-Length`` here answers every oversized request with a 413 problem document before a
byte of the body is read. A NUL in the path (404) or query string (400) is refused too, because
PostgreSQL text columns reject it and every filter would otherwise need its own check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from config.problems import PROBLEM_CONTENT_TYPE, problem_body

DEFAULT_MAX_BODY_BYTES = 256 * 1024


def max_body_bytes() -> int:
    """The largest request body accepted (``API_MAX_BODY_BYTES``)."""
    return int(getattr(settings, "API_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))


def _problem(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse(
        problem_body(status=status, code=code, detail=detail),
        status=status,
        content_type=PROBLEM_CONTENT_TYPE,
    )


class RequestLimitsMiddleware:
    """413 for a body declared larger than allowed; 400 for a bad Content-Length; NUL in the URL refused."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        refusal = limits_refusal(request.META, request.path)
        return refusal or self.get_response(request)


def limits_refusal(meta: Mapping[str, Any], path: str) -> JsonResponse | None:
    """The refusal of a request by its headers and URL alone, or None (also used by orders/asgi.py)."""
    return _body_refusal(meta) or _url_refusal(meta, path)


def _body_refusal(meta: Mapping[str, Any]) -> JsonResponse | None:
    declared = meta.get("CONTENT_LENGTH") or ""
    if not declared.strip():
        return None
    if not declared.strip().isdigit():
        return _problem(400, "bad_request", "The Content-Length header is not a non-negative integer.")
    limit = max_body_bytes()
    if int(declared) > limit:
        return _problem(413, "payload_too_large", f"The request body is larger than {limit} bytes.")
    return None


def _url_refusal(meta: Mapping[str, Any], path: str) -> JsonResponse | None:
    # In the path no resource can match (404, as an unknown id); in the query it is input.
    if "\x00" in path:
        return _problem(404, "not_found", "There is no resource at this path.")
    if "%00" in meta.get("QUERY_STRING", ""):
        return _problem(400, "invalid", "The query string must not contain NUL characters.")
    return None
