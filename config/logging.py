"""Log context: every JSON log line carries ``correlation_id``, ``trace_id`` and ``user_id``.

The fields live in a context variable, so they follow a request or a message through every
function (and every thread's own work) without being passed around:

- the HTTP middleware binds the caller's ``user_id`` (from the Bearer token) and, for
  ``/api/orders/{order_id}…``, the order id as ``correlation_id``;
- placing an order binds its new id;
- the consumers bind each message's ``correlation_id`` (the order id through the saga).

``trace_id``/``span_id`` come from the current OpenTelemetry span. Fields passed with
``extra=`` win over the bound ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.http import HttpRequest, HttpResponse
from opentelemetry import trace

FIELDS = ("correlation_id", "user_id")

_bound: ContextVar[dict[str, str]] = ContextVar("oms_log_context", default={})  # noqa: B039 - never mutated


def bind(**fields: str | None) -> None:
    """Add fields to the current scope (a request or a message), dropping empty ones."""
    _bound.set({**_bound.get(), **{k: str(v) for k, v in fields.items() if v}})


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """A scope whose log lines carry ``fields``; the previous ones come back on exit."""
    token = _bound.set({**_bound.get(), **{k: str(v) for k, v in fields.items() if v}})
    try:
        yield
    finally:
        _bound.reset(token)


def bound_fields() -> dict[str, str]:
    """The fields bound in the current scope."""
    return dict(_bound.get())


class LogContextFilter(logging.Filter):
    """Puts the bound fields and the current trace on every record (never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        bound = _bound.get()
        for name in FIELDS:
            if getattr(record, name, None) in (None, ""):
                setattr(record, name, bound.get(name))
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            record.trace_id = format(span_context.trace_id, "032x")
            record.span_id = format(span_context.span_id, "016x")
        elif not hasattr(record, "trace_id"):
            record.trace_id = None
        return True


class RequestLogContextMiddleware:
    """Binds the caller and the order a request is about for the request's log lines."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with log_context(user_id=_user_id(request)):
            return self.get_response(request)

    def process_view(self, request: HttpRequest, view: Any, args: Any, kwargs: dict[str, Any]) -> None:
        order_id = kwargs.get("order_id")
        if order_id:
            bind(correlation_id=str(order_id))


def _user_id(request: HttpRequest) -> str | None:
    # The same stateless check DRF runs in the view, done early so middleware and view logs
    # both carry the caller; an invalid token simply leaves user_id empty here.
    if not request.META.get("HTTP_AUTHORIZATION", "").startswith("Bearer "):
        return None
    from config.authentication import RequestJWTAuthentication

    try:
        found = RequestJWTAuthentication().authenticate(request)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - a bad token is the view's 401, not a logging error
        return None
    return None if found is None else str(getattr(found[0], "user_id", "") or "") or None
