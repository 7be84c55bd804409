"""W3C trace context carried from a request into events, outbox rows and message headers.

The relay publishes each row in a PRODUCER span continuing the row's ``traceparent`` and
puts that span's context in the message headers; each context handles a message in a
CONSUMER span continuing the headers. Commands and events a handler writes pick the consumer
span up (:func:`current_context`), so one order's saga is one trace across every process.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import SpanKind, Status, StatusCode

from config.logging import carried_user, log_context

if TYPE_CHECKING:
    from .messages import Message

T = TypeVar("T")

tracer = trace.get_tracer("oms.eventstore")


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


def carried_context(message: Message) -> otel_context.Context:
    """The trace context (and baggage) that ``message``'s headers carry."""
    return extract(message.headers)


@contextmanager
def consuming(context: str, message: Message, carried: otel_context.Context | None = None) -> Iterator[None]:
    """Handle ``message`` for ``context`` in a CONSUMER span continuing its headers, logs bound to it.

    The headers' context is made current, baggage included: the lines carry the order and the
    user who placed it, and what the handler sends carries them on. ``carried``: that context
    when the caller has already read it (:func:`carried_context`).
    """
    attributes = {
        "messaging.system": "rabbitmq",
        "messaging.operation": "process",
        "messaging.message.id": message.message_id,
        "messaging.destination.name": message.routing_key,
        "oms.context": context,
        "oms.correlation_id": message.correlation_id,
    }
    if carried is None:
        carried = extract(message.headers)
    token = otel_context.attach(carried)
    try:
        with (
            tracer.start_as_current_span(
                f"{context} handle {message.type}",
                context=carried,
                kind=SpanKind.CONSUMER,
                attributes=attributes,
            ),
            log_context(correlation_id=message.correlation_id, user_id=carried_user(carried)),
        ):
            yield
    finally:
        otel_context.detach(token)


def start_publish_span(
    *, routing_key: str, message_id: str, headers: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """A PRODUCER span continuing ``headers``; returns it and the headers that now point at it.

    A message whose trace is not sampled gets no span, and its headers as they are: every
    sampler of this project follows its parent's decision (config/telemetry.py), so that span
    would be dropped anyway, after an extract, a sampling decision and an inject per message.
    """
    if not_sampled(headers.get("traceparent")):
        return trace.INVALID_SPAN, dict(headers)
    span = tracer.start_span(
        f"publish {routing_key}",
        context=extract({k: v for k, v in headers.items() if isinstance(v, str)}),
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "rabbitmq",
            "messaging.operation": "publish",
            "messaging.message.id": message_id,
            "messaging.destination.name": routing_key,
        },
    )
    carried = dict(headers)
    inject(carried, context=trace.set_span_in_context(span))
    return span, carried


def not_sampled(traceparent: object) -> bool:
    """Whether a W3C ``traceparent`` names a valid parent that was not sampled (read without an extract)."""
    found = _TRACEPARENT.fullmatch(traceparent) if isinstance(traceparent, str) else None
    return (
        found is not None
        and found["trace_id"] != "0" * 32
        and found["span_id"] != "0" * 16
        and not int(found["flags"], 16) & 1
    )


_TRACEPARENT = re.compile(r"00-(?P<trace_id>[0-9a-f]{32})-(?P<span_id>[0-9a-f]{16})-(?P<flags>[0-9a-f]{2})")


def end_publish_span(span: Any, *, error: str | None = None) -> None:
    """End a span from :func:`start_publish_span`, marking it failed when the broker refused."""
    if error is not None:
        span.set_status(Status(StatusCode.ERROR, error[:200]))
    span.end()


def in_current_context(fn: Callable[[], T]) -> Callable[[], T]:
    """``fn`` bound to the current context (trace and log fields), for ``transaction.on_commit``.

    An on-commit callback runs after the handler's span has ended; without this, what it
    writes (a payment's outcome) would start a trace of its own.
    """
    captured = contextvars.copy_context()
    return lambda: captured.run(fn)
