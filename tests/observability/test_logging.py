"""Log lines are JSON and carry the correlation id, the trace id and the caller."""

from __future__ import annotations

import io
import json
import logging
import uuid

import pytest
from django.conf import settings
from django.http import HttpResponse
from django.test import RequestFactory
from opentelemetry.sdk.trace import TracerProvider

from config.logging import JsonFormatter, LogContextFilter, RequestLogContextMiddleware, bound_fields


@pytest.fixture
def json_log():
    """A logger writing through the formatter and filter settings.LOGGING gives the console handler."""
    config = settings.LOGGING
    console = config["handlers"]["console"]
    assert console["formatter"] == "json" and console["filters"] == ["context"]
    assert config["formatters"]["json"]["()"] == "config.logging.JsonFormatter"
    assert config["filters"]["context"]["()"] == "config.logging.LogContextFilter"
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(LogContextFilter())
    logger = logging.getLogger(f"tests.observability.{uuid.uuid4().hex}")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    disabled = logging.root.manager.disable
    logging.disable(logging.NOTSET)  # another test may have silenced logging globally

    def lines() -> list[dict]:
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    logger.lines = lines  # type: ignore[attr-defined]
    yield logger
    logging.disable(disabled)


def test_a_handled_message_logs_json_with_its_correlation_and_trace(json_log):
    from eventstore.messages import Message
    from eventstore.tracing import consuming

    order_id = str(uuid.uuid4())
    message = Message(
        message_id=str(uuid.uuid4()),
        kind="event",
        type="InventoryReserved",
        aggregate_type="reservation",
        aggregate_id=f"reservation-{order_id}",
        data={"order_id": order_id},
        occurred_at="2026-01-01T00:00:00Z",
        correlation_id=order_id,
        source="inventory",
        headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    )
    tracer = TracerProvider().get_tracer("test")

    with tracer.start_as_current_span("outer"), consuming("sagas", message):
        json_log.info("saga advanced")
    json_log.info("outside")

    inside, outside = json_log.lines()
    assert inside["event"] == "saga advanced"
    assert inside["level"] == "INFO"
    assert inside["correlation_id"] == order_id
    # The consumer span continues the message's trace, whatever was current before.
    assert inside["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert outside["correlation_id"] == bound_fields().get("correlation_id")
    assert outside["correlation_id"] != order_id
    assert outside["trace_id"] is None


@pytest.mark.django_db
def test_a_request_logs_the_caller_and_the_order_it_is_about(json_log, token_for):
    order_id = str(uuid.uuid4())
    request = RequestFactory().get(
        f"/api/orders/{order_id}", HTTP_AUTHORIZATION=f"Bearer {token_for('alice')}"
    )

    def view(request):
        json_log.warning("looking at an order")
        return HttpResponse("ok")

    middleware = RequestLogContextMiddleware(
        lambda r: middleware.process_view(r, view, (), {"order_id": order_id}) or view(r)
    )
    middleware(request)
    json_log.info("after the request")

    during, after = json_log.lines()
    assert during["user_id"] == "alice"
    assert during["correlation_id"] == order_id
    assert during["level"] == "WARNING"
    assert after["user_id"] == bound_fields().get("user_id")


def test_an_invalid_token_logs_no_user(json_log):
    request = RequestFactory().get("/api/orders", HTTP_AUTHORIZATION="Bearer not-a-token")
    RequestLogContextMiddleware(lambda r: json_log.info("anonymous") or HttpResponse("ok"))(request)
    assert json_log.lines()[0]["user_id"] is None
