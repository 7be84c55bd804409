"""Every error as ``application/problem+json`` (RFC 9457), for DRF views and plain Django views.

A problem document carries ``type``, ``title``, ``status`` and ``detail``; a validation error
adds ``errors: [{"pointer", "detail"}]`` with a JSON pointer (RFC 6901) into the request body.
``type`` is a URN naming the kind of problem (``urn:oms:problem:<code>``); clients branch on it
or on ``status``. No document ever carries a stack trace, SQL or an internal class name.

Views raise DRF exceptions (``ValidationError``, ``NotFound``, ``PermissionDenied``) or the
problem exceptions below (``Conflict``, ``UnprocessableEntity`` …), or return
:func:`problem_response` when they need full control (extra members, headers).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from django.core import exceptions as django_exceptions
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, serializers, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import set_rollback
from rest_framework_simplejwt.exceptions import TokenError

from .conflicts import ConcurrentUpdate

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:oms:problem:"
BEARER_CHALLENGE = 'Bearer realm="api"'


_TITLES = {
    "invalid": "Invalid input",
    "parse_error": "Malformed request body",
    "not_authenticated": "Authentication required",
    "authentication_failed": "Authentication failed",
    "token_not_valid": "Invalid token",
    "no_active_account": "Authentication failed",
    "permission_denied": "Permission denied",
    "not_found": "Not found",
    "method_not_allowed": "Method not allowed",
    "not_acceptable": "Not acceptable",
    "unsupported_media_type": "Unsupported media type",
    "throttled": "Too many requests",
    "conflict": "Conflict",
    "payload_too_large": "Payload too large",
    "unprocessable_entity": "Unprocessable content",
    "service_unavailable": "Service unavailable",
    "server_error": "Internal server error",
}


# --- Exceptions views raise ------------------------------------------------------------------


class Problem(exceptions.APIException):
    """An API error with optional extra members and headers (``Retry-After`` …)."""

    def __init__(
        self,
        detail: Any = None,
        code: str | None = None,
        *,
        retry_after: int | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail, code)
        self.headers = dict(headers or {})
        if retry_after is not None:
            self.headers["Retry-After"] = str(int(retry_after))
        self.extra = extra


class Conflict(Problem):
    """409: the request clashes with the resource's current state."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state of the resource."
    default_code = "conflict"


class InvalidJSON(Problem):
    """400: the body is not strict JSON (config/parsers.py); ``errors`` points at the offending value."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "The request body is not valid JSON."
    default_code = "parse_error"


class PayloadTooLarge(Problem):
    """413: the request body is larger than allowed."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


class UnprocessableEntity(Problem):
    """422: well-formed but unusable (e.g. an Idempotency-Key reused with another body)."""

    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "The request cannot be processed."
    default_code = "unprocessable_entity"


class ServiceUnavailable(Problem):
    """503: a dependency is down; the client may retry later."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The service is temporarily unavailable."
    default_code = "service_unavailable"


# --- Documentation shapes (for extend_schema) -------------------------------------------------


class ProblemErrorSerializer(serializers.Serializer):
    pointer = serializers.CharField(help_text="JSON pointer (RFC 6901) into the request body")
    detail = serializers.CharField()


class ProblemSerializer(serializers.Serializer):
    """An RFC 9457 problem document, as every error of the API is answered."""

    type = serializers.CharField(help_text="urn:oms:problem:<code>")
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    # The metaclass moves fields off the class, so this does not shadow Serializer.errors.
    errors = ProblemErrorSerializer(  # type: ignore[assignment]
        many=True, required=False, help_text="Field errors (400 only)"
    )


# --- Building documents ----------------------------------------------------------------------


def problem_body(
    *, status: int, code: str, detail: str, title: str | None = None, **extra: Any
) -> dict[str, Any]:
    """The problem document for ``status`` and ``code`` (``extra`` adds members)."""
    body = {
        "type": TYPE_PREFIX + code,
        "title": title or _TITLES.get(code) or _phrase(status),
        "status": status,
        "detail": detail,
    }
    body.update(extra)
    return body


def problem_response(
    status: int,
    title: str | None = None,
    detail: str | None = None,
    *,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """A ready-to-return problem response, usable from DRF views and plain Django views alike."""
    code = code or _code_for_status(status)
    body = problem_body(status=status, code=code, detail=detail or _phrase(status), title=title, **extra)
    response = Response(body, status=status, headers=headers, content_type=PROBLEM_CONTENT_TYPE)
    # Pre-set so the response renders even outside DRF's content negotiation.
    response.accepted_renderer = JSONRenderer()
    response.accepted_media_type = "application/json"
    response.renderer_context = {}  # type: ignore[attr-defined]
    return response


def validation_errors(detail: Any, path: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """Flatten DRF's nested error detail into ``[{"pointer", "detail"}]`` (RFC 6901 pointers)."""
    if isinstance(detail, dict):
        found: list[dict[str, str]] = []
        for key, value in detail.items():
            here = path if key in (api_settings.NON_FIELD_ERRORS_KEY, "__all__") else (*path, str(key))
            found.extend(validation_errors(value, here))
        return found
    if isinstance(detail, list | tuple):
        if all(isinstance(item, str) for item in detail):
            return [{"pointer": _pointer(path), "detail": str(item)} for item in detail]
        found = []
        for index, item in enumerate(detail):
            found.extend(validation_errors(item, (*path, str(index))))
        return found
    return [{"pointer": _pointer(path), "detail": str(detail)}]


def _pointer(path: tuple[str, ...]) -> str:
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in path)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _code_for_status(status: int) -> str:
    return _phrase(status).lower().replace(" ", "_").replace("-", "_")


# --- The DRF exception handler ---------------------------------------------------------------


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: map every known error to a problem document.

    Unknown exceptions return None so DRF re-raises them; Django then logs them and answers
    with :func:`server_error` (a 500 problem without details).
    """
    api_exc = _as_api_exception(exc)
    if api_exc is None:
        return None
    set_rollback()
    if isinstance(api_exc, exceptions.ValidationError):
        return _validation_response(api_exc)
    status_code, headers = _status_and_headers(api_exc)
    code, detail = _code_and_detail(api_exc)
    extra = api_exc.extra if isinstance(api_exc, Problem) else {}
    return problem_response(status_code, detail=detail, code=code, headers=headers, **extra)


def _as_api_exception(exc: Exception) -> exceptions.APIException | None:
    """DRF's own exceptions as they are; the Django and library ones we know, translated."""
    if isinstance(exc, exceptions.APIException):
        return exc
    if isinstance(exc, Http404):
        # Never echo Django's message: it names the model ("No Order matches …").
        return exceptions.NotFound()
    if isinstance(exc, django_exceptions.PermissionDenied):
        return exceptions.PermissionDenied()
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge()
    if isinstance(exc, django_exceptions.ValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        return exceptions.ValidationError(detail)
    if isinstance(exc, TokenError):
        return exceptions.AuthenticationFailed(str(exc), "token_not_valid")
    if isinstance(exc, ConcurrentUpdate):
        return Conflict("The resource was changed by another request; retry.", "concurrent_update")
    return None


def _validation_response(exc: exceptions.ValidationError) -> Response:
    errors = validation_errors(exc.detail) or [{"pointer": "", "detail": "Invalid input."}]
    if len(errors) == 1:
        detail = errors[0]["detail"]
    else:
        detail = f"The request has {len(errors)} invalid values; see errors."
    return problem_response(400, detail=detail, code="invalid", errors=errors)


def _status_and_headers(exc: exceptions.APIException) -> tuple[int, dict[str, str]]:
    headers: dict[str, str] = {}
    status_code = exc.status_code
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        # DRF downgrades these to 403 on views without an authenticator; a missing or bad
        # credential is always 401 here, with the challenge the client should answer.
        status_code = status.HTTP_401_UNAUTHORIZED
        headers["WWW-Authenticate"] = getattr(exc, "auth_header", None) or BEARER_CHALLENGE
    wait = getattr(exc, "wait", None) if isinstance(exc, exceptions.Throttled) else None
    if wait is not None:
        headers["Retry-After"] = str(max(1, int(wait)))
    if isinstance(exc, Problem):
        headers.update(exc.headers)
    return status_code, headers


def _code_and_detail(exc: exceptions.APIException) -> tuple[str, str]:
    detail = exc.detail
    if isinstance(detail, dict):
        # simplejwt's InvalidToken: {"detail", "code", "messages"}; the messages name token
        # classes, so only the summary goes out.
        code = str(detail.get("code") or exc.default_code)
        return code, str(detail.get("detail") or exc.default_detail)
    if isinstance(detail, list):
        text = " ".join(str(item) for item in detail) or str(exc.default_detail)
        return str(exc.default_code), text
    code = getattr(detail, "code", None) or exc.default_code
    return str(code), str(detail)


# --- Django-level handlers (config/urls.py: handler400/403/404/500) --------------------------


def _django_problem(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse(
        problem_body(status=status, code=code, detail=detail),
        status=status,
        content_type=PROBLEM_CONTENT_TYPE,
    )


def bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """handler400: a malformed or suspicious request (bad Host header, body too large …)."""
    if isinstance(exception, RequestDataTooBig):
        return _django_problem(413, "payload_too_large", "The request body is too large.")
    return _django_problem(400, "bad_request", "The request could not be understood.")


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """handler403 for views outside DRF."""
    return _django_problem(403, "permission_denied", "You do not have permission to perform this action.")


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """handler404: no route (or a plain Django view raised Http404)."""
    return _django_problem(404, "not_found", "There is no resource at this path.")


def server_error(request: HttpRequest) -> JsonResponse:
    """handler500: an unexpected failure; the details stay in the logs, never in the answer."""
    return _django_problem(500, "server_error", "An unexpected error occurred; it has been logged.")
