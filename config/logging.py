"""Logging: one configuration for every process, one JSON object per line, with the log context.

Every process of both run modes — gunicorn's master and its uvicorn workers, the consumers, the
relay, the Celery worker and beat, the embedded server — logs through :func:`logging_config`:
Django applies it (``LOGGING_CONFIG``), gunicorn's master through ``logconfig_dict``
(config/gunicorn.conf.py), Celery through its ``setup_logging`` signal (config/celery_app.py),
so nothing keeps a plain-text handler of its own. Each line has ``timestamp`` (ISO-8601, UTC),
``level``, ``logger``, ``event`` (the message), ``process`` (``OMS_PROCESS``: the name the
stack's supervisor gives it), ``pid``, and:

- ``correlation_id``: the order a line is about. The HTTP middleware binds it for
  ``/api/orders/{order_id}…``, placing an order binds the new id, the consumers bind each
  message's (the order id through the whole saga);
- ``user_id``: the caller. The middleware binds the Bearer token's user; it also travels with
  everything the request causes as W3C baggage (:data:`USER_BAGGAGE`), so the consumers bind
  the user whose order they work on;
- ``trace_id``/``span_id``: the current OpenTelemetry span.

The fields live in a context variable, so they follow a request or a message through every
function without being passed around. Fields passed with ``extra=`` win over the bound ones.
"""

from __future__ import annotations

import logging
import logging.config
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import partial
from types import TracebackType
from typing import Any

from django.http import HttpRequest, HttpResponse
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from pythonjsonlogger.core import RESERVED_ATTRS, merge_record_extra
from pythonjsonlogger.orjson import OrjsonFormatter

FIELDS = ("correlation_id", "user_id")
_tracer = trace.get_tracer(__name__)
# The baggage entry that carries the caller from a request into every message it causes.
USER_BAGGAGE = "oms.user_id"

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


@contextmanager
def caller_context(user_id: str | None) -> Iterator[None]:
    """A request's scope: its lines carry ``user_id``, and so does what it sends (as baggage).

    Whatever the client sent under :data:`USER_BAGGAGE` is replaced (or removed for an
    anonymous caller): only an authenticated user reaches the messages.
    """
    current = otel_context.get_current()
    carried = (
        baggage.set_baggage(USER_BAGGAGE, user_id, current)
        if user_id
        else baggage.remove_baggage(USER_BAGGAGE, current)
    )
    token = otel_context.attach(carried)
    try:
        with log_context(user_id=user_id):
            yield
    finally:
        otel_context.detach(token)


def carried_user(context: otel_context.Context | None = None) -> str | None:
    """The user a message or a placement carries (:func:`caller_context`), if any."""
    value = baggage.get_baggage(USER_BAGGAGE, context)
    return str(value) if value else None


def log_on_commit(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """Log ``event`` once the current transaction commits, with the log fields and trace of now.

    Never for a transaction rolled back: a batch retried one by one logs each change once,
    when it is durable. The line is built (and the callback registered) only when ``level``
    is enabled.
    """
    if not logger.isEnabledFor(level):
        return
    extra: dict[str, Any] = {**_bound.get(), **fields}
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        extra["trace_id"] = format(span_context.trace_id, "032x")
        extra["span_id"] = format(span_context.span_id, "016x")
    from django.db import transaction

    transaction.on_commit(partial(logger.log, level, event, extra=extra))


class LogContextFilter(logging.Filter):
    """Puts the bound fields and the current trace on every record (never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        bound = _bound.get()
        for name in FIELDS:
            if getattr(record, name, None) in (None, ""):
                setattr(record, name, bound.get(name))
        if not getattr(record, "trace_id", None):
            # A line logged later on behalf of an earlier moment (log_on_commit) keeps its trace.
            span_context = trace.get_current_span().get_span_context()
            if span_context.is_valid:
                record.trace_id = format(span_context.trace_id, "032x")
                record.span_id = format(span_context.span_id, "016x")
            else:
                record.trace_id = None
        return True


# --- The one configuration ----------------------------------------------------------------------


# The management commands that are processes of docs/architecture.md "Run modes", by their names there.
_COMMANDS = {"consume": "consumers", "relay_outbox": "relay", "serve_embedded": "embedded"}


def process_name(argv: list[str] | None = None) -> str:
    """The name of this process in its log lines: ``OMS_PROCESS``, else guessed from the command.

    deploy/run_stack.py sets ``OMS_PROCESS`` to the names of docs/architecture.md "Run modes" (web,
    consumers, worker, beat, relay); elsewhere (a container, a test) the same names come from
    the command line, and any other management command is named by itself.
    """
    named = os.environ.get("OMS_PROCESS", "")
    if named:
        return named
    args = sys.argv if argv is None else argv
    program = os.path.basename(args[0]) if args else ""
    if program == "manage.py" and len(args) > 1:
        return _COMMANDS.get(args[1], args[1])
    if program == "celery":
        return next((arg for arg in args[1:] if arg in ("worker", "beat")), program)
    if program == "gunicorn":
        return "web"
    return program or "python"


class JsonFormatter(OrjsonFormatter):
    """One JSON object per line: timestamp, level, logger, event, process, pid, then the fields.

    Built on orjson (the formatting runs for every line on the hot paths). Objects that JSON
    does not know (an ``HttpRequest`` Django passes along, uvicorn's coloured copy of its
    message) are left out rather than written as their ``repr``.
    """

    SKIPPED = frozenset({*RESERVED_ATTRS, "color_message", "request"})

    def __init__(self, *args: Any, process: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("reserved_attrs", list(self.SKIPPED))
        super().__init__(*args, **kwargs)
        self.process = process or process_name()

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["timestamp"] = iso_time(record.created)
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["event"] = record.message
        log_data["process"] = self.process
        log_data["pid"] = record.process
        log_data.update(message_dict)
        merge_record_extra(record, log_data, reserved=self._skip_fields)


def iso_time(created: float) -> str:
    """ISO-8601 in UTC with milliseconds and a ``Z``, as every API timestamp is written."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


def logging_config(
    level: str | None = None, *, access_log: bool | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The logging configuration of every process (``settings.LOGGING`` is this).

    ``level``: the root level (``LOG_LEVEL``, INFO by default). ``access_log``: a line per HTTP
    request from the web server (``WEB_ACCESS_LOG=1``; off by default, it is on the path of
    every order); the framework loggers that would print their own plain lines, or a second
    copy of a line, are routed to the one JSON handler instead.
    """
    env = os.environ if environ is None else environ
    level = (level or env.get("LOG_LEVEL") or "INFO").upper()
    if access_log is None:
        access_log = env.get("WEB_ACCESS_LOG", "") == "1"
    access_level = "INFO" if access_log else "WARNING"
    server_level = "INFO" if access_log else "CRITICAL"
    # Loggers with their own handler (and no propagation): gunicorn and uvicorn give theirs
    # handlers of their own choosing, which this replaces.
    own = {"handlers": ["console"], "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "config.logging.LogContextFilter"}},
        "formatters": {"json": {"()": "config.logging.JsonFormatter"}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "filters": ["context"],
                "stream": "ext://sys.stdout",
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Django's defaults print 4xx/5xx a second time in plain text (DEBUG) and its
            # development server's request lines in a format of its own: through root instead.
            "django": {"handlers": [], "propagate": True, "level": level},
            # The development server's request lines are the embedded mode's access log (it
            # logs a 4xx at WARNING, a 5xx at ERROR: off, those repeat django.request's line).
            "django.server": {"handlers": [], "propagate": True, "level": server_level},
            "django.db.backends": {"level": "WARNING"},
            "py.warnings": {"handlers": [], "propagate": True},
            "gunicorn.error": {**own, "level": level},
            "gunicorn.access": {**own, "level": access_level},
            "uvicorn": {**own, "level": level},
            "uvicorn.error": {**own, "level": level},
            "uvicorn.access": {**own, "level": access_level},
        },
    }


def configure(config: dict[str, Any]) -> None:
    """Apply ``config`` (Django's ``LOGGING_CONFIG``; Celery's ``setup_logging``).

    Warnings go to the ``py.warnings`` logger, and an exception nobody caught — in the main
    thread or another — is logged as one line instead of a plain traceback.
    """
    logging.config.dictConfig(config)
    logging.captureWarnings(True)
    if sys.excepthook is sys.__excepthook__:
        sys.excepthook = _log_uncaught
    if threading.excepthook is threading.__excepthook__:
        threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)
        return
    logging.getLogger("oms.uncaught").critical("uncaught exception", exc_info=(kind, value, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    logging.getLogger("oms.uncaught").error(
        "uncaught exception in thread %s",
        args.thread.name if args.thread else "?",
        exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback),
    )


class LineLogger:
    """A text stream whose every line becomes a log record (a command's ``stdout``/``stderr``).

    Django's ``runserver`` prints its banner with ``self.stdout.write``; handing it one of
    these keeps the embedded server's output JSON.
    """

    def __init__(
        self, logger: logging.Logger, level: int = logging.INFO, *, whole_lines: bool = False
    ) -> None:
        self._logger = logger
        self._level = level
        # A command that writes a line in pieces (migrate's "Applying x..." and, later, " OK")
        # flushes between them: with ``whole_lines`` a line is logged at its end only.
        self._whole_lines = whole_lines
        self._partial = ""

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._log(line)
        return len(text)

    def flush(self) -> None:
        if not self._whole_lines:
            self.close()

    def close(self) -> None:
        """Log what is left of an unfinished line."""
        self._log(self._partial)
        self._partial = ""

    def _log(self, line: str) -> None:
        if line.strip():
            self._logger.log(self._level, line.strip() if self._whole_lines else line.rstrip())

    def isatty(self) -> bool:
        return False


# The one-shot steps of the run modes (`make stack`, compose's migrate service, the Kubernetes
# Job): what they print is part of a deploy's output, so it is logged as JSON lines too.
LOGGED_COMMANDS = frozenset({"migrate", "declare_topology", "seed_demo", "create_service_roles"})


def run_command_logged(argv: list[str]) -> None:
    """``manage.py <command> …`` with the command's ``stdout`` and ``stderr`` as log lines.

    Logger ``manage.<command>``: what it writes to stdout at INFO, to stderr (a
    ``CommandError``'s message, say) at ERROR. Run from manage.py for :data:`LOGGED_COMMANDS`;
    ``call_command`` (tests, other commands) still writes to the streams it is given.
    """
    import django
    from django.core.management import get_commands, load_command_class
    from django.core.management.base import OutputWrapper

    django.setup()
    name = argv[1]
    command = load_command_class(get_commands()[name], name)
    logger = logging.getLogger(f"manage.{name}")
    out = LineLogger(logger, whole_lines=True)
    err = LineLogger(logger, logging.ERROR, whole_lines=True)
    command.stdout, command.stderr = OutputWrapper(out), OutputWrapper(err)  # type: ignore[arg-type]
    try:
        command.run_from_argv(argv)
    finally:
        out.close()
        err.close()


class RequestLogContextMiddleware:
    """Binds the caller and the order a request is about for the request's log lines.

    An error response is logged here, inside that scope: Django would log it (once) only
    after every middleware returned, without the caller or the order. A request the Django
    instrumentation does not trace (it traces no ASGI request: the web process serves Django
    over ASGI) gets a server span here, so its lines and the events it writes have a trace.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with _server_span(request), caller_context(_user_id(request)):
            response = self.get_response(request)
            if response.status_code >= 400:
                from django.utils.log import log_response

                # Marks the response logged: Django's own call after the middleware skips it.
                log_response(
                    "%s: %s", response.reason_phrase, request.path, response=response, request=request
                )
            return response

    def process_view(self, request: HttpRequest, view: Any, args: Any, kwargs: dict[str, Any]) -> None:
        order_id = kwargs.get("order_id")
        if order_id:
            bind(correlation_id=str(order_id))
        span = getattr(request, "_oms_server_span", None)
        match = request.resolver_match
        if span is not None and match is not None and match.route:
            span.update_name(f"{request.method} {match.route}")


@contextmanager
def _server_span(request: HttpRequest) -> Iterator[None]:
    if trace.get_current_span().get_span_context().is_valid:
        yield  # the instrumentation's span (or the caller's)
        return
    from opentelemetry.propagate import extract

    with _tracer.start_as_current_span(
        str(request.method),
        context=extract(dict(request.headers)),
        kind=trace.SpanKind.SERVER,
        attributes={"http.request.method": str(request.method)},
    ) as span:
        request._oms_server_span = span  # type: ignore[attr-defined]
        yield


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
