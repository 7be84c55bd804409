"""Log lines are JSON and carry the correlation id, the trace id and the caller."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import transaction
from django.http import HttpResponse
from django.test import RequestFactory
from opentelemetry import baggage
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import TracerProvider

from config.logging import (
    USER_BAGGAGE,
    JsonFormatter,
    LogContextFilter,
    RequestLogContextMiddleware,
    bound_fields,
    caller_context,
    log_context,
    log_on_commit,
    logging_config,
    process_name,
)
from tests.observability.conftest import ISO_UTC

ROOT = Path(__file__).resolve().parents[2]


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


# --- The line itself --------------------------------------------------------------------------


def test_a_line_is_one_json_object_with_iso_time_process_and_its_exception_inside(json_log):
    try:
        raise ValueError("first line\nsecond line")
    except ValueError:
        json_log.exception("it failed", extra={"request": RequestFactory().get("/x"), "order_event": "X"})

    [text] = json_log.handlers[0].stream.getvalue().splitlines()
    line = json.loads(text)
    assert list(line)[:6] == ["timestamp", "level", "logger", "event", "process", "pid"]
    assert ISO_UTC.match(line["timestamp"]), line["timestamp"]
    assert (line["level"], line["event"], line["order_event"]) == ("ERROR", "it failed", "X")
    assert line["pid"] == os.getpid() and line["process"]
    # the traceback is a field of the one line; an object JSON does not know is left out
    assert "ValueError: first line\nsecond line" in line["exc_info"]
    assert "request" not in line


def test_the_process_is_named_by_the_supervisor_or_guessed_from_the_command(monkeypatch):
    monkeypatch.delenv("OMS_PROCESS", raising=False)
    assert process_name(["/srv/manage.py", "consume", "--all"]) == "consumers"
    assert process_name(["manage.py", "relay_outbox"]) == "relay"
    assert process_name(["manage.py", "rebuild_projections"]) == "rebuild_projections"
    assert process_name(["/venv/bin/celery", "-A", "config", "--quiet", "beat"]) == "beat"
    assert process_name(["/venv/bin/gunicorn", "config.asgi:application"]) == "web"
    monkeypatch.setenv("OMS_PROCESS", "consumers-2")
    assert process_name(["/srv/manage.py", "consume", "sagas"]) == "consumers-2"


def test_the_access_log_is_a_switch_of_the_one_configuration():
    off = logging_config(access_log=False)["loggers"]
    on = logging_config(access_log=True)["loggers"]
    # uvicorn's request lines (the web process) and runserver's (embedded): INFO lines
    assert off["uvicorn.access"]["level"] == "WARNING" and on["uvicorn.access"]["level"] == "INFO"
    # runserver logs a 4xx at WARNING: off, it would repeat django.request's line
    assert off["django.server"]["level"] == "CRITICAL" and on["django.server"]["level"] == "INFO"
    assert logging_config(environ={"WEB_ACCESS_LOG": "1"})["loggers"]["uvicorn.access"]["level"] == "INFO"
    assert logging_config(environ={"LOG_LEVEL": "warning"})["root"]["level"] == "WARNING"


# --- Lines written when the change commits ------------------------------------------------------


@pytest.mark.django_db
def test_a_change_is_logged_when_it_commits_never_when_it_rolls_back(
    json_log, django_capture_on_commit_callbacks
):
    tracer = TracerProvider().get_tracer("test")

    class Undone(Exception):
        pass

    with django_capture_on_commit_callbacks(execute=True):
        with tracer.start_as_current_span("handling") as span, log_context(user_id="alice"):
            trace_id = format(span.get_span_context().trace_id, "032x")
            with transaction.atomic():
                log_on_commit(json_log, logging.INFO, "kept", correlation_id="order-1", status="DONE")
            with pytest.raises(Undone), transaction.atomic():
                log_on_commit(json_log, logging.INFO, "undone", correlation_id="order-2")
                raise Undone
        # nothing is written before the commit
        assert json_log.lines() == []

    # written after the commit, outside the span and the scope, with their fields
    [line] = json_log.lines()
    assert (line["event"], line["correlation_id"], line["status"]) == ("kept", "order-1", "DONE")
    assert line["user_id"] == "alice" and line["trace_id"] == trace_id


# --- The caller travels with what a request causes ----------------------------------------------


def test_the_caller_travels_as_baggage_into_messages_and_the_consumers_lines(json_log):
    from eventstore.messages import Message
    from eventstore.tracing import consuming, current_context

    tracer = TracerProvider().get_tracer("test")
    # a client's own baggage entry under our name is replaced by the authenticated caller
    forged = otel_context.attach(baggage.set_baggage(USER_BAGGAGE, "mallory"))
    try:
        with tracer.start_as_current_span("request"), caller_context("alice"):
            _, headers = current_context()
        with tracer.start_as_current_span("anonymous request"), caller_context(None):
            _, anonymous = current_context()
    finally:
        otel_context.detach(forged)
    assert "oms.user_id=alice" in headers["baggage"]
    assert "mallory" not in anonymous.get("baggage", "")

    order_id = str(uuid.uuid4())
    message = Message(
        message_id=str(uuid.uuid4()),
        kind="command",
        type="ReserveInventory",
        aggregate_type="reservation",
        aggregate_id=f"reservation-{order_id}",
        data={"order_id": order_id},
        occurred_at="2026-01-01T00:00:00Z",
        correlation_id=order_id,
        source="inventory",
        headers=headers,
    )
    with consuming("inventory", message):
        json_log.info("reserving")
        _, sent_on = current_context()
    json_log.info("after")

    during, after = json_log.lines()
    assert (during["user_id"], during["correlation_id"]) == ("alice", order_id)
    assert "oms.user_id=alice" in sent_on["baggage"]  # what the handler sends carries it on
    assert after["user_id"] is None


# --- Every logger of every framework, through the one configuration -----------------------------

FRAMEWORKS = """
import logging, threading, warnings
import django
django.setup()
from config.celery_app import app
app.log.setup(loglevel="INFO")  # what the Celery worker and beat do at start
for name in ("gunicorn.error", "uvicorn.error", "celery.worker", "django.request"):
    logging.getLogger(name).warning("from %s", name)
logging.getLogger("uvicorn.access").info("a request line, off by default")
warnings.warn("a warning")
thread = threading.Thread(target=lambda: 1 / 0, name="doomed")
thread.start()
thread.join()
raise RuntimeError("the end")
"""


def test_every_framework_logs_json_once_and_an_uncaught_exception_is_one_line():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DEBUG": "true",  # Django's own handlers print a plain copy only with DEBUG
        "OMS_PROCESS": "probe",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("WEB_ACCESS_LOG", None)
    result = subprocess.run(
        [sys.executable, "-c", FRAMEWORKS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr == "", result.stderr  # everything went through the one JSON handler
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert {line["process"] for line in lines} == {"probe"}
    events = [(line["logger"], line["event"]) for line in lines]
    for name in ("gunicorn.error", "uvicorn.error", "celery.worker", "django.request"):
        assert events.count((name, f"from {name}")) == 1, events
    assert not [event for event in events if "request line" in event[1]]
    assert [line for line in lines if line["logger"] == "py.warnings" and "a warning" in line["event"]]
    [in_thread] = [line for line in lines if line["event"] == "uncaught exception in thread doomed"]
    assert "ZeroDivisionError" in in_thread["exc_info"] and in_thread["level"] == "ERROR"
    [at_exit] = [line for line in lines if line["event"] == "uncaught exception"]
    assert "RuntimeError: the end" in at_exit["exc_info"] and at_exit["level"] == "CRITICAL"
