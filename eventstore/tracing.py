"""W3C trace context carried from a request into events, outbox rows and message headers."""

from __future__ import annotations

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject


def current_context() -> tuple[str, dict[str, str]]:
    """The current trace id (hex, or "") and the headers that carry it (``traceparent``)."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return "", {}
    headers: dict[str, str] = {}
    inject(headers)
    return format(span_context.trace_id, "032x"), headers


def attach_from_headers(headers: dict[str, str]) -> object:
    """Make the context carried by ``headers`` current; pass the token to :func:`detach`."""
    return otel_context.attach(extract(headers))


def detach(token: object) -> None:
    """Undo :func:`attach_from_headers`."""
    otel_context.detach(token)  # type: ignore[arg-type]
