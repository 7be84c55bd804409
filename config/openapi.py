"""The OpenAPI description tells the truth: every status an operation can answer, as it is sent.

drf-spectacular documents what a view declares with ``extend_schema``; what every operation can
answer whatever its view — the refusals of the middleware, of DRF's negotiation and parsing, of
authentication, roles and throttling — would otherwise have to be repeated by every view, and
was not (issue 12). :class:`ProblemAutoSchema` (``DEFAULT_SCHEMA_CLASS``) adds them from the
view's own configuration, so a new view is documented correctly without doing anything:

- 400 always (a NUL in the query string, a bad ``Content-Length``: config/middleware.py), 406
  (no JSON in ``Accept``) on DRF views, 413 always (a declared body over ``API_MAX_BODY_BYTES``);
  415 where the operation takes a body;
- 401 with ``WWW-Authenticate`` where a permission needs a caller, 403 where one needs the ADMIN
  role, 429 with ``Retry-After`` where the view has throttles;
- every error (4xx, 5xx) as ``application/problem+json``, the media type it is sent with
  (config/problems.py), never ``application/json``.

A view still declares what only it knows (404, 409, 422, 503, a 403 of its own) and may give
any status its own description. The tag names the context that owns the operation (its view's
module: ``orders``, ``queries``, ``inventory``, ``payments``, ``auth``, ``health``, and
``admin`` for the operations console under /api/admin/); a summary is the view's own or the
first line of its docstring.
"""

from __future__ import annotations

import inspect
from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers
from rest_framework.permissions import AllowAny

from config.fields import RejectUnknownFields
from config.permissions import IsAdmin
from config.problems import PROBLEM_CONTENT_TYPE, ProblemSerializer

# What an error means when the view does not say more.
STANDARD_DESCRIPTIONS = {
    "400": "Invalid input: a field (see `errors`), the query string or the request body",
    "401": "Missing, invalid, expired or revoked access token",
    "403": "The caller's role does not allow this operation",
    "404": "No such resource (or one the caller may not see)",
    "406": "The Accept header admits no JSON",
    "409": "The request conflicts with the resource's current state",
    "413": "The request body is larger than allowed",
    "415": "The request body is not application/json",
    "422": "Well-formed but unusable",
    "429": "Too many requests; see Retry-After",
    "503": "A dependency is unavailable; retry later",
}

WWW_AUTHENTICATE = {
    "schema": {"type": "string"},
    "required": True,
    "description": 'The challenge to answer: `Bearer realm="api"` (and the token error, if any)',
}
RETRY_AFTER = {
    "schema": {"type": "string", "pattern": r"^\d+$"},
    "required": False,
    "description": "Seconds to wait before trying again",
}

# The context that owns an operation, by the module (or a package) of its view method.
_CONTEXT_OF_MODULE = {
    "orders.auth_api": "auth",
    "config.health": "health",
    "config.console": "admin",
}
CONTEXTS = ("orders", "inventory", "payments", "queries")
# The component name drf-spectacular gives config.problems.ProblemSerializer.
PROBLEM_COMPONENT = "Problem"


def problem(description: str) -> OpenApiResponse:
    """A problem document a view answers with, in its own words (for ``extend_schema``)."""
    return OpenApiResponse(response=ProblemSerializer, description=description)


def retry_after(*codes: int) -> OpenApiParameter:
    """The ``Retry-After`` response header of ``codes`` (for ``extend_schema(parameters=…)``)."""
    return OpenApiParameter(
        "Retry-After",
        str,
        OpenApiParameter.HEADER,
        response=list(codes),
        description=str(RETRY_AFTER["description"]),
    )


class ProblemAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema with the statuses, media types and headers every view shares."""

    def get_tags(self) -> list[str]:
        """The owning context: ``orders``, ``queries``, ``auth`` … (one tag, one group in Swagger)."""
        return [self._context()]

    def get_description(self) -> str:  # type: ignore[override]
        """The docstring of the method, else of the view class that defines it.

        config/urls.py composes /api/orders from two contexts' views; each operation keeps the
        description of its own view, not the composed class's.
        """
        handler_name = self.method.lower()
        handler = getattr(self.view, handler_name, None)
        if handler is not None and handler.__doc__:
            return inspect.cleandoc(handler.__doc__)
        for owner in type(self.view).__mro__:
            if handler_name in vars(owner):
                return inspect.cleandoc(owner.__doc__ or "")
        return str(super().get_description())

    def get_summary(self) -> str | None:
        """The view's summary when it gives one (extend_schema), else its docstring's first line."""
        summary = super().get_summary()
        if summary:
            return summary
        description = self.get_description()
        return description.strip().splitlines()[0].rstrip(".") if description else None

    def _map_serializer_field(self, field: Any, direction: Any, bypass_extensions: bool = False) -> Any:
        """Also the length limits of a nested list (``many=True``), which drf-spectacular leaves out."""
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if isinstance(field, serializers.ListSerializer) and isinstance(schema, dict):
            # ListSerializer has min_length and max_length; the stubs miss them.
            least, most = getattr(field, "min_length", None), getattr(field, "max_length", None)
            if not field.allow_empty:
                least = max(1, least or 1)
            if least is not None:
                schema.setdefault("minItems", least)
            if most is not None:
                schema.setdefault("maxItems", most)
        return schema

    def _map_basic_serializer(self, serializer: Any, direction: Any) -> Any:
        """A body that refuses unknown members says so (``additionalProperties: false``)."""
        schema = super()._map_basic_serializer(serializer, direction)
        if direction == "request" and isinstance(serializer, RejectUnknownFields):
            schema["additionalProperties"] = False
        return schema

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        for code in self._implied_statuses():
            if code not in responses:
                responses[code] = self._get_response_for_code(ProblemSerializer, code, direction=direction)
                responses[code]["description"] = STANDARD_DESCRIPTIONS[code]
        for code, response in responses.items():
            if code.isdigit() and int(code) >= 400:
                _as_problem(code, response)
        return dict(sorted(responses.items()))

    # --- what the view's configuration implies ---------------------------------------------

    def _implied_statuses(self) -> list[str]:
        codes = ["400", "413"]
        if self._is_drf_view():
            codes.append("406")
        if self._get_request_body():
            codes.append("415")
        if self._needs_caller():
            codes.append("401")
        if self._needs_admin():
            codes.append("403")
        if self.view.get_throttles():
            codes.append("429")
        return codes

    def _permissions(self) -> list[Any]:
        return list(self.view.get_permissions())

    def _needs_caller(self) -> bool:
        return any(not isinstance(permission, AllowAny) for permission in self._permissions())

    def _needs_admin(self) -> bool:
        return any(isinstance(permission, IsAdmin) for permission in self._permissions())

    def _is_drf_view(self) -> bool:
        return bool(self.view.renderer_classes)

    def _context(self) -> str:
        handler = getattr(self.view, self.method.lower(), None)
        module = getattr(handler, "__module__", None) or type(self.view).__module__
        for prefix, context in _CONTEXT_OF_MODULE.items():
            if module == prefix or module.startswith(prefix + "."):
                return context
        package = module.split(".", 1)[0]
        return package if package in CONTEXTS else "api"


# --- Inputs as strict as the parser and the serializers are ---------------------------------

# config/parsers.py refuses NUL anywhere in a body, config/middleware.py in a query string; a
# CharField trims whitespace and refuses what is left blank.
NO_NUL = "^[^\\u0000]*$"
NOT_BLANK = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"


def strict_inputs(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """POSTPROCESSING_HOOKS: every text field says what it refuses.

    Every free-text string of a request body (a ``*Request`` component) or of a query
    parameter gets the pattern it is validated with: no NUL, and not blank when it must not be
    empty.
    """
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request") and component.get("type") == "object":
            for member in component.get("properties", {}).values():
                _text_pattern(member)
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "query":
                    _text_pattern(parameter.get("schema", {}))
    return result


def _text_pattern(schema: dict[str, Any]) -> None:
    if schema.get("type") != "string" or any(key in schema for key in ("pattern", "enum", "format")):
        return
    schema["pattern"] = NOT_BLANK if schema.get("minLength", 0) >= 1 else NO_NUL


def _as_problem(code: str, response: dict[str, Any]) -> None:
    """A problem response as it is sent: ``application/problem+json``, with its headers.

    An error that is not a problem document (the readiness probe's 503 is its report) stays
    as its view declared it.
    """
    content = response.get("content") or {}
    schemas = [media["schema"] for media in content.values() if "schema" in media]
    if not schemas or schemas[0].get("$ref", "").rsplit("/", 1)[-1] != PROBLEM_COMPONENT:
        return
    response["content"] = {PROBLEM_CONTENT_TYPE: {"schema": schemas[0]}}
    if not response.get("description"):
        response["description"] = STANDARD_DESCRIPTIONS.get(code, "")
    headers = response.setdefault("headers", {})
    if code == "401":
        headers.setdefault("WWW-Authenticate", WWW_AUTHENTICATE)
    if code == "429":
        headers.setdefault("Retry-After", RETRY_AFTER)
    if not headers:
        del response["headers"]
